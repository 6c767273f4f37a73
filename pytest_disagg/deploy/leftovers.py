"""What a killed earlier session left behind: found from its state file, reported, removed on request.

Every session writes ``runtime_dir()/session-<pid>.json`` while it has children or temporary
directories (``processes``). A session that ended normally removes its file; a file whose owner is
no longer running (its pid is gone, or now belongs to a process started at another time) belongs
to a session that was killed. Its supervisors normally ended every child within seconds of the
kill; what can still be there is listed here:

- processes of the recorded process groups (a supervisor itself killed, e.g. by the OOM killer),
  identified by group *and* start time — never by name or by port;
- recorded ports that something still listens on (reported only: a port names no owner);
- temporary directories (``pytest-disagg-*``) the session made;
- baseline lock files held by one of those processes (a lock held by a live session is left alone).

``clean`` ends those processes (SIGTERM, then SIGKILL), removes the directories and the state file.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..children import processes
from ..children.supervisor import all_stats, proc_stat


@dataclass
class StaleSession:
    state_path: Path
    owner_pid: int
    argv: list[str]
    processes: dict[int, str] = field(default_factory=dict)    # pid -> command line
    ports: list[int] = field(default_factory=list)             # recorded ports still in use
    dirs: list[Path] = field(default_factory=list)
    locks: dict[str, int] = field(default_factory=dict)        # lock file -> holding leftover pid
    bad_state: str | None = None

    def empty(self) -> bool:
        return not (self.processes or self.ports or self.dirs or self.locks)

    def lines(self) -> list[str]:
        head = f"session pid {self.owner_pid} ({' '.join(self.argv)[:80]}), state {self.state_path}"
        out = [head + (f": unreadable state ({self.bad_state})" if self.bad_state else "")]
        out += [f"  process {pid}: {cmd[:120]}" for pid, cmd in sorted(self.processes.items())]
        out += [f"  port {p} still in use" for p in self.ports]
        out += [f"  temporary directory {d}" for d in self.dirs]
        out += [f"  baseline lock {path} held by leftover pid {pid}" for path, pid in self.locks.items()]
        return out


def _owner_alive(pid: int, starttime: int | None) -> bool:
    st = proc_stat(pid)
    return st is not None and (starttime is None or st[3] == starttime)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _group_members(entry: dict, stats: dict) -> set[int]:
    """Live members of a recorded supervisor's process group/session, if the group is still ours.

    A group id is not reused while any member lives; if a process with the group's id runs but
    started at another time than the recorded supervisor, the group is a stranger's."""
    pgid, started = entry.get("pgid"), entry.get("starttime")
    if not isinstance(pgid, int) or pgid <= 1:
        return set()
    leader = stats.get(pgid)
    if leader is not None and started is not None and leader[3] != started:
        return set()
    return {pid for pid, (_, g, sid, t) in stats.items()
            if (g == pgid or sid == pgid) and (started is None or t >= started)}


def _lock_holders() -> dict[int, set[int]]:
    """inode -> pids holding a flock/POSIX lock on it (from /proc/locks)."""
    holders: dict[int, set[int]] = {}
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return holders
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:
            continue                      # a waiter, not a holder
        try:
            pid, dev_inode = int(parts[4]), parts[5]
            holders.setdefault(int(dev_inode.split(":")[-1]), set()).add(pid)
        except (IndexError, ValueError):
            continue
    return holders


def find(root: Path | None = None, lock_files: Sequence[Path] = ()) -> list[StaleSession]:
    """Every killed session's state file under ``root`` and what it left; live sessions are skipped."""
    root = processes.runtime_dir() if root is None else Path(root)
    if not root.is_dir():
        return []
    stats = None
    found = []
    for path in sorted(root.glob("session-*.json")):
        try:
            doc = json.loads(path.read_text())
            owner, owner_start = int(doc["pid"]), doc.get("starttime")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            found.append(StaleSession(path, -1, [], bad_state=f"{type(exc).__name__}: {exc}"))
            continue
        if owner == os.getpid() or _owner_alive(owner, owner_start):
            continue
        stats = all_stats() if stats is None else stats
        stale = StaleSession(path, owner, [str(a) for a in doc.get("argv", [])])
        for entry in doc.get("processes", []):
            for pid in sorted(_group_members(entry, stats)):
                stale.processes[pid] = _cmdline(pid)
            stale.ports += [p for p in entry.get("ports", []) if isinstance(p, int) and _port_busy(p)]
        stale.dirs = [Path(d) for d in doc.get("dirs", []) if _is_ours(Path(d)) and Path(d).exists()]
        found.append(stale)
    if found and lock_files:
        holders = _lock_holders()
        for lock in lock_files:
            try:
                inode = os.stat(lock).st_ino
            except OSError:
                continue
            for stale in found:
                for pid in holders.get(inode, set()) & set(stale.processes):
                    stale.locks[str(lock)] = pid
    return found


def _is_ours(path: Path) -> bool:
    """Only the suite's own temporary directories are ever removed."""
    return path.name.startswith("pytest-disagg-") and path.is_absolute() and ".." not in path.parts


def clean(stale: Iterable[StaleSession], grace_s: float = 3.0) -> list[str]:
    """End the leftover processes, remove the directories and state files; what was done, line by line."""
    stale = list(stale)
    done: list[str] = []
    pids = {pid for s in stale for pid in s.processes}
    for pid in pids:
        _kill(pid, signal.SIGTERM)
        _kill(pid, signal.SIGCONT)       # left paused by the pool (SIGSTOP): let it see the SIGTERM
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(proc_stat(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if proc_stat(pid):
            _kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not any(proc_stat(p) for p in pids):
            break
        time.sleep(0.05)
    done += [f"ended process {pid}" + ("" if not proc_stat(pid) else " (STILL ALIVE)") for pid in sorted(pids)]
    for s in stale:
        for d in s.dirs:
            shutil.rmtree(d, ignore_errors=True)
            done.append(f"removed {d}" + (" (NOT ALL)" if d.exists() else ""))
        try:
            s.state_path.unlink()
            done.append(f"removed {s.state_path}")
        except OSError:
            pass
    return done


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

