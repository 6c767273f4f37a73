"""Run by tests/test_processes.py: a process tree like vLLM's (a multiprocessing child, a
resource tracker, a grandchild in its own session, a
daemon whose parent exited), each sleeping until it is ended."""
import multiprocessing as mp
import os
import subprocess
import sys
import time


def sleeper():
    time.sleep(600)


if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=sleeper)
    p.start()
    subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
    # A daemon: its parent exits at once, so it is re-parented (to the supervisor, a subreaper).
    subprocess.run([sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
                    "'import time; time.sleep(600)'], start_new_session=True)"])
    print("tree up", flush=True)
    time.sleep(600)
