"""Child processes that must never outlive the suite.

Every process the suite starts goes through ``spawn``: it gets its own process group (so vLLM's
engine-core children die with it), it is remembered here, and it is killed — group and all — at
session end, on Ctrl-C, on SIGTERM and at interpreter exit, whichever comes first. Nothing is
killed by name or by port: only the groups this process started.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from typing import IO, Mapping, Sequence

_live: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


def spawn(cmd: Sequence[str], *, env: Mapping[str, str], log: IO[bytes], cwd: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        list(cmd), env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=cwd, start_new_session=True,
    )
    with _lock:
        _live[proc.pid] = proc
    return proc


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def terminate(proc: subprocess.Popen, grace_s: float = 10.0) -> int | None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            break
        time.sleep(0.1)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        for _ in range(50):
            if not _group_alive(pgid):
                break
            time.sleep(0.05)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    with _lock:
        _live.pop(proc.pid, None)
    return proc.returncode


def live_pids() -> list[int]:
    with _lock:
        return list(_live)


def terminate_all(grace_s: float = 5.0) -> None:
    """Kill every group still alive; used at exit and from signal handlers."""
    with _lock:
        procs = list(_live.values())
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.05)
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        with _lock:
            _live.pop(proc.pid, None)


atexit.register(terminate_all)

_previous_sigterm = None


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so pytest unwinds and every teardown runs."""
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


def restore_sigterm_handler() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _previous_sigterm or signal.SIG_DFL)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")
