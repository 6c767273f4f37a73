"""Child processes that must never outlive the suite: the one way to start one, wait for it to be
healthy, and end it.

Every process the suite starts (vLLM servers, the proxy, Redis) goes through :func:`start`. It runs
under a small supervisor (``supervisor.py``) in a new session; the supervisor holds the read end
of a pipe whose write end only this process has, and ends the child's whole tree — EngineCore and
other grandchildren, and any group or session they made — when the pipe closes, i.e. whenever
this process dies, SIGKILL included. Ending a child (:func:`stop`) is one path: SIGTERM to the
supervisor, which ends the tree (SIGTERM, then SIGKILL after a grace period); only if the
supervisor itself does not answer is its process group SIGKILLed from here.

What is running is also written to a per-session state file under :func:`runtime_dir` (pids,
process groups, start times, ports, temporary directories), so that the next session can find and
report — and with ``--disagg-cleanup-stale`` remove — what a killed session left (``leftovers``).
Nothing is ever killed by name or by port.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import supervisor as _sup
from ..files import atomic_write
from .affinity import process_tree
from .logs import error_lines, log_tail

SUPERVISOR = str(Path(_sup.__file__).resolve())
DEFAULT_GRACE_S = 10.0


class StartError(RuntimeError):
    """A child that exited early or never became healthy; the message says which, and its log tail."""


def runtime_dir() -> Path:
    """Where session state files live: ``$DISAGG_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/pytest-disagg``,
    else ``<tmp>/pytest-disagg-<uid>``."""
    explicit = os.environ.get("DISAGG_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "pytest-disagg"
    return Path(tempfile.gettempdir()) / f"pytest-disagg-{os.getuid()}"


def describe_status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit status {code})"
    return f"exited with code {code}"


@dataclass
class Child:
    """One started process (under its supervisor)."""

    name: str
    cmd: tuple[str, ...]
    supervisor: subprocess.Popen
    pid: int                         # the command's own pid (the supervisor's child)
    log_path: Path
    ports: tuple[int, ...] = ()
    grace_s: float = DEFAULT_GRACE_S
    started: float = field(default_factory=time.monotonic)
    stopped_by_us: bool = False
    _log: object = None
    _starttime: int | None = None

    def __post_init__(self):
        self._starttime = _starttime(self.pid)

    @property
    def pgid(self) -> int:
        return self.supervisor.pid     # start_new_session: the supervisor leads the group

    def poll(self) -> int | None:
        """The command's exit status (negative: killed by that signal), None until its supervisor
        has ended what the command left and exited the way the command did."""
        return self.supervisor.poll()

    def alive(self) -> bool:
        """False as soon as the command itself is gone (its supervisor may still be cleaning up)."""
        if self.supervisor.poll() is not None:
            return False
        st = _sup.proc_stat(self.pid, exiting_is_gone=True)     # a dying server's sockets close first
        return st is not None and (self._starttime is None or st[3] == self._starttime)

    def wait_status(self) -> int | None:
        """The command's exit status once it is dead, waiting for the supervisor to finish (a few s)."""
        try:
            return self.supervisor.wait(timeout=self.grace_s + 5)
        except subprocess.TimeoutExpired:
            return None

    def status_text(self) -> str:
        return describe_status(self.poll() if self.alive() else self.wait_status())

    def explain(self, what: str, lines: int = 50) -> str:
        """``what`` happened, with the command, the exception lines of its log and its log tail."""
        causes = error_lines(self.log_path)
        cause = ("--- errors in the log ---\n" + "\n".join(causes) + "\n") if causes else ""
        return (f"{self.name} (pid {self.pid}) {what}\ncommand: {' '.join(self.cmd)}\nlog: {self.log_path}\n"
                f"{cause}--- last {lines} log lines ---\n{log_tail(self.log_path, lines)}")

    def to_state(self) -> dict:
        return {"name": self.name, "pid": self.pid, "supervisor_pid": self.supervisor.pid, "pgid": self.pgid,
                "starttime": _starttime(self.supervisor.pid), "cmd": list(self.cmd)[:12], "ports": list(self.ports),
                "log": str(self.log_path)}


def _starttime(pid: int) -> int | None:
    st = _sup.proc_stat(pid)
    return st[3] if st else None


class _Session:
    """This process's live children, its watch pipe and its state file."""

    def __init__(self):
        self.lock = threading.RLock()
        self.children: dict[int, Child] = {}
        self.starting: dict[int, dict] = {}       # supervisors whose command's pid is not known yet
        self.dirs: set[str] = set()
        self._watch: tuple[int, int] | None = None
        self._pid = None

    def watch_fd(self) -> int:
        """The read end every supervisor gets; the write end stays here (and dies with us)."""
        with self.lock:
            if self._watch is None or self._pid != os.getpid():
                self._watch = os.pipe()            # both ends close-on-exec, not inheritable
                self._pid = os.getpid()
            return self._watch[0]

    def forget_pipe_in_fork(self) -> None:
        """A fork()ed child (without exec) must not keep the supervisors alive: close its copy."""
        if self._watch is not None:
            for fd in self._watch:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._watch = None
        self.children = {}
        self.starting = {}
        self.dirs = set()

    def state_path(self) -> Path:
        return runtime_dir() / f"session-{os.getpid()}.json"

    def save(self) -> None:
        with self.lock:
            path = self.state_path()
            if not self.children and not self.dirs and not self.starting:
                try:
                    path.unlink()
                except OSError:
                    pass
                return
            doc = {"pid": os.getpid(), "starttime": _starttime(os.getpid()), "argv": sys.argv[:8],
                   "created": time.time(),
                   "processes": [c.to_state() for c in self.children.values()] + list(self.starting.values()),
                   "dirs": sorted(self.dirs)}
            try:
                atomic_write(path, json.dumps(doc, indent=1), dir_mode=0o700)
            except OSError:
                pass      # the state file helps the next session; never fail this one over it


_session = _Session()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_session.forget_pipe_in_fork)


def start(name: str, cmd: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: str | None = None,
          ports: Sequence[int] = (), grace_s: float = DEFAULT_GRACE_S) -> Child:
    """Start ``cmd`` under a supervisor, its output appended to ``log_path``; :class:`StartError` if it
    cannot be executed at all."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    watch = _session.watch_fd()
    report_r, report_w = os.pipe()
    try:
        sup = subprocess.Popen(
            [sys.executable, "-I", SUPERVISOR, str(watch), str(report_w), f"{grace_s:g}", "--", *cmd],
            env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            start_new_session=True, pass_fds=(watch, report_w),
        )
    except BaseException:
        os.close(report_r)
        os.close(report_w)
        log.close()
        raise
    os.close(report_w)
    with _session.lock:     # recorded before the wait: a kill right now must still leave a trace
        _session.starting[sup.pid] = {"name": name, "pid": None, "supervisor_pid": sup.pid, "pgid": sup.pid,
                                      "starttime": _starttime(sup.pid), "cmd": list(cmd)[:12],
                                      "ports": list(ports), "log": str(log_path)}
        _session.save()
    try:
        with os.fdopen(report_r, "rb") as fh:
            line = fh.readline().decode(errors="replace").strip()
    finally:
        with _session.lock:
            _session.starting.pop(sup.pid, None)
    if not line.isdigit():
        sup.wait()
        log.close()
        with _session.lock:
            _session.save()
        raise StartError(f"{name} could not be started: {line or 'the supervisor died'}\ncommand: {' '.join(cmd)}\n"
                         f"log: {log_path}\n{log_tail(log_path, 20)}")
    child = Child(name=name, cmd=tuple(cmd), supervisor=sup, pid=int(line), log_path=log_path,
                  ports=tuple(ports), grace_s=grace_s, _log=log)
    with _session.lock:
        _session.children[sup.pid] = child
        _session.save()
    return child


def popen(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen:
    """A short-lived helper (a probe) as a ``Popen`` with text stdout/stderr pipes, under a
    supervisor: it dies with pytest whatever kills pytest. End it early with :func:`end_popen`."""
    watch = _session.watch_fd()
    report_r, report_w = os.pipe()
    try:
        return subprocess.Popen([sys.executable, "-I", SUPERVISOR, str(watch), str(report_w), "3", "--", *cmd],
                                env=None if env is None else dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                pass_fds=(watch, report_w))
    finally:
        os.close(report_w)
        os.close(report_r)        # the pid is not needed; the supervisor ignores the closed pipe


def end_popen(sup: subprocess.Popen) -> None:
    """End a :func:`popen` helper's whole tree through its supervisor (SIGKILL to the group if it hangs)."""
    if sup.poll() is not None:
        return
    sup.send_signal(signal.SIGTERM)
    try:
        sup.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sup.pid, signal.SIGKILL)
        sup.wait()


def run(cmd: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` for a short-lived helper (a probe),
    under a supervisor too: it dies with pytest, and on a timeout its whole tree is ended
    (``subprocess.TimeoutExpired`` is raised as usual)."""
    sup = popen(cmd, env=env, cwd=cwd)
    try:
        out, err = sup.communicate(timeout=timeout)
    except BaseException:         # timeout, Ctrl-C: end the tree through its supervisor
        end_popen(sup)
        raise
    return subprocess.CompletedProcess(list(cmd), sup.returncode, out, err)


def wait_healthy(child: Child, healthy: Callable[[], bool], timeout_s: float, *, hint: str = "",
                 watch: Sequence[Child] = ()) -> float:
    """Poll ``healthy()`` until it is true; seconds it took since the start. :class:`StartError` when
    the child (or one of ``watch``, started alongside) exits first or ``timeout_s`` (counted from the
    start) passes — the children are left running for the caller to stop."""
    deadline = child.started + timeout_s
    interval = 0.05
    while True:
        for c in (child, *watch):
            if not c.alive() and not c.stopped_by_us:
                raise StartError(c.explain(f"{c.status_text()} before becoming healthy"))
        if healthy():
            return time.monotonic() - child.started
        if time.monotonic() > deadline:
            raise StartError(child.explain(f"not healthy after {timeout_s:.0f} s{hint}"))
        time.sleep(interval)
        interval = min(0.5, interval * 1.5)


def start_healthy(name: str, cmd: Sequence[str], healthy: Callable[[], bool], timeout_s: float, **kwargs) -> Child:
    """:func:`start` then :func:`wait_healthy`; a child that does not become healthy is stopped."""
    child = start(name, cmd, **kwargs)
    try:
        wait_healthy(child, healthy, timeout_s)
    except BaseException:
        stop(child)
        raise
    return child


def _begin_stop(child: Child, grace_s: float | None = None) -> None:
    """SIGTERM to the supervisor (the child's own grace), or SIGUSR1 where the caller allows less
    than that grace (the supervisor then ends the tree within its quick grace, 3 s)."""
    child.stopped_by_us = True
    quick = grace_s is not None and grace_s < child.grace_s
    if child.supervisor.poll() is None:
        try:
            child.supervisor.send_signal(signal.SIGUSR1 if quick else signal.SIGTERM)
        except ProcessLookupError:
            pass


def _finish_stop(child: Child, deadline: float) -> int | None:
    try:
        child.supervisor.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:   # the supervisor is stuck: end its group from here
        if child._log is not None:       # the supervisor's own line will not come: say why it ended
            child._log.write(f"pytest-disagg: the supervisor had not ended {STUCK_SUPERVISOR_S:g} s after its grace: "
                             f"SIGKILL to its process group\n".encode())
            child._log.flush()
        try:
            os.killpg(child.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.supervisor.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if child._log is not None:
        child._log.close()
        child._log = None
    with _session.lock:
        _session.children.pop(child.supervisor.pid, None)
        _session.save()
    return child.poll()


QUICK_GRACE_S = _sup.PARENT_GONE_GRACE_S      # what a given-up start waits (SIGUSR1 to the supervisor)
# How long past its grace a supervisor may take before pytest ends its group itself. Generous: on
# the 2-core box beside real deployments a supervisor can be starved for seconds, and the fallback
# loses its report line and its reaping (a CI run on 2026-12-08 lost the line with 5 s here).
STUCK_SUPERVISOR_S = 15.0


def stop(child: Child, grace_s: float | None = None) -> int | None:
    """End the child and everything it started (SIGTERM, SIGKILL after the grace period); its exit status."""
    grace = child.grace_s if grace_s is None else grace_s
    _begin_stop(child, grace_s)
    return _finish_stop(child, time.monotonic() + grace + STUCK_SUPERVISOR_S)


def live_children() -> list[Child]:
    with _session.lock:
        return list(_session.children.values())


def live_pids() -> list[int]:
    return [c.pid for c in live_children()]


def signal_pids(pids, sig: int) -> None:
    """Send ``sig`` to each pid; those that are gone meanwhile are skipped."""
    _sup.signal_all(pids, sig)


def signal_trees(children, sig: int) -> list[int]:
    """Send ``sig`` to every live child's command and all its descendants (not its supervisor, which
    must stay awake to end the tree); returns the pids signalled, the command's own first."""
    pids = [p for c in children if c.alive() for p in process_tree(c.pid)]
    signal_pids(pids, sig)
    return pids


def stop_all(children, grace_s: float | None = None) -> None:
    """End several children at once (each gets its grace period, in parallel)."""
    children = list(children)
    for child in children:
        _begin_stop(child, grace_s)
    grace = max((c.grace_s for c in children), default=0.0) if grace_s is None else grace_s
    deadline = time.monotonic() + grace + STUCK_SUPERVISOR_S
    for child in children:
        _finish_stop(child, deadline)


def terminate_all(grace_s: float = 5.0) -> None:
    """End every child still alive, all at once; used at exit and from signal handlers."""
    stop_all(live_children(), grace_s)


def register_dir(path: Path) -> None:
    """A temporary directory this session owns (reported as a leftover if the session is killed)."""
    with _session.lock:
        _session.dirs.add(str(path))
        _session.save()


def unregister_dir(path: Path) -> None:
    with _session.lock:
        _session.dirs.discard(str(path))
        _session.save()


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
