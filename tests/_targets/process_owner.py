"""Run by tests/test_processes.py: a stand-in for pytest that starts a process tree through
``processes.start`` from a worker thread that then exits (as the pool's threads may), prints
"ready" and waits to be killed."""
import os
import sys
import threading
import time
from pathlib import Path

from pytest_disagg.children import processes

TREE = Path(__file__).with_name("process_tree.py")


def go():
    processes.start("tree", [sys.executable, str(TREE)], env=dict(os.environ), log_path=Path(sys.argv[1]),
                    ports=(int(sys.argv[2]),) if len(sys.argv) > 2 else ())


t = threading.Thread(target=go)
t.start()
t.join()
print("ready", flush=True)
time.sleep(600)
