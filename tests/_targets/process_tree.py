"""Run by tests/test_processes.py: a process tree like vLLM's (a multiprocessing child, a
resource tracker, a grandchild in its own session), each sleeping until it is ended."""
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
    print("tree up", flush=True)
    time.sleep(600)
