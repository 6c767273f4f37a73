"""Keep every thread of a CPU server on the cores the pool gave it.

Why: vLLM's NIXL connector on CPU (vLLM 0.31–0.32, ``nixl/base_worker.py``) reserves "the last
core of each NUMA node" for KV loading and pins its worker's main thread there with
``os.sched_setaffinity`` — read from ``/sys``, ignoring ``VLLM_CPU_OMP_THREADS_BIND`` and the
process's own affinity. On a box where the pool binds prefill and decode to disjoint cores, every
NIXL server's main thread lands on the machine's last core: on 2 cores, prefill's main thread
(the engine's busy loop, the Python side of every forward) runs on decode's compute core, and the
two fight (docs/measurements/2026-12-02-nixl-cpu-pinning.md; ``benchmarks/nixl_cpu_stages.py`` reproduces it).

:func:`confine` moves back every thread of a server's process tree whose affinity strays outside
the server's core set; threads already inside it (the OpenMP threads vLLM bound) are untouched.
"""
from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def parse_cores(text: str) -> set[int]:
    """``"0-3,6"`` -> {0, 1, 2, 3, 6} (the VLLM_CPU_OMP_THREADS_BIND / taskset list form)."""
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
            if b < a:
                raise ValueError(f"core range {part!r} runs backwards")
            out.update(range(a, b + 1))
        else:
            out.add(int(part))
    if not out:
        raise ValueError(f"no cores in {text!r}")
    return out


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/<pid>/task/*/children``)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        for task in (proc / str(p) / "task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return seen


def threads(pid: int, proc: Path = PROC) -> list[int]:
    try:
        return sorted(int(t.name) for t in (proc / str(pid) / "task").iterdir())
    except OSError:
        return []


def confine(pid: int, cores: set[int], *, everything: set[int] | None = None, getaff=os.sched_getaffinity,
            setaff=os.sched_setaffinity, proc: Path = PROC) -> list[dict]:
    """Move every thread of ``pid``'s tree that was *pinned* outside ``cores`` (an affinity that is
    neither within ``cores`` nor the whole machine, ``everything``) onto ``cores``; threads that
    float over every core (the API server, the engine core) are left to the scheduler. Returns what
    was moved (pid, tid, from, to). Threads that vanish meanwhile are skipped."""
    if everything is None:
        everything = set(getaff(0))
    moved = []
    for p in process_tree(pid, proc):
        for tid in threads(p, proc):
            try:
                current = set(getaff(tid))
                if current <= cores or current >= everything:
                    continue
                setaff(tid, cores)
            except (ProcessLookupError, PermissionError, OSError):
                continue
            moved.append({"pid": p, "tid": tid, "from": sorted(current), "to": sorted(cores)})
    return moved


# --- CPU use per thread ------------------------------------------------------------------------

def cpu_ticks(pids, proc: Path = PROC) -> dict[tuple[int, int], int]:
    """(pid, tid) -> user + system clock ticks, for every thread of ``pids``' process trees: how an
    idle server's busy threads are found (NIXL's progress thread polls with a zero timeout, so an
    idle nixl-cpu server spins a core: ``DeploymentPool.others_paused``)."""
    out = {}
    for root in pids:
        for p in process_tree(root, proc):
            for tid in threads(p, proc):
                try:
                    fields = (proc / str(p) / "task" / str(tid) / "stat").read_text().rsplit(")", 1)[1].split()
                    out[(p, tid)] = int(fields[11]) + int(fields[12])
                except (OSError, IndexError, ValueError):
                    continue
    return out


def busy_cores(before: dict, after: dict, window_s: float, hz: int | None = None) -> float:
    """Cores used between two :func:`cpu_ticks` samples ``window_s`` apart (a thread that appeared
    meanwhile is not counted)."""
    hz = hz or os.sysconf("SC_CLK_TCK")
    return sum(after[k] - before.get(k, after[k]) for k in after) / hz / window_s


__all__ = ["busy_cores", "confine", "cpu_ticks", "parse_cores", "process_tree", "threads"]
