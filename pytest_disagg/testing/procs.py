"""Which of some processes are still alive (tests of teardown; needs psutil, a test extra)."""
from __future__ import annotations

from typing import Iterable


def alive(pids: Iterable[int]) -> list[str]:
    """``"pid: command line"`` of each process that still runs (zombies do not count)."""
    import psutil   # optional dependency: the test extra

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return out
