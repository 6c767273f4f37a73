"""The small process that stands between pytest and every child it starts (stdlib only).

Run as a script (``python -I supervisor.py WATCH_FD REPORT_FD GRACE_S -- CMD...``), never
imported by the child. It

- becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): descendants whose parent dies — vLLM's
  EngineCore when the API server is killed, a multiprocessing resource tracker — are re-parented
  to it instead of to init, so it can always find and end them;
- starts CMD in its own process group (the one ``start_new_session`` made for the supervisor),
  writes CMD's pid (or why it could not start) to REPORT_FD and closes it;
- watches WATCH_FD, the read end of a pipe whose write end only pytest holds: end-of-file means
  pytest is gone, however it died (SIGKILL and the OOM killer included), and the supervisor ends
  every descendant within GRACE_S (at most 3 s) and exits;
- on SIGTERM (``processes.stop``) ends every descendant, SIGTERM first and SIGKILL after GRACE_S;
  on SIGUSR1 the same within at most 3 s (a start given up: a vLLM server still starting ignores
  SIGTERM and would run out the whole grace);
- when CMD exits by itself, ends what CMD left behind (within 3 s) and exits the way CMD did (same
  exit code, or killed by the same signal), so pytest sees the child's own exit status.

Nothing is found by name or port: the descendants are this process's tree (walked in ``/proc``)
plus the members of any process group or session a descendant created.

Why not ``PR_SET_PDEATHSIG`` on the child: it fires when the *thread* that forked exits (the pool
may start servers from threads), and it is not inherited by grandchildren (EngineCore).
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
PARENT_GONE_GRACE_S = 3.0


PF_EXITING = 0x4     # linux/sched.h: the task has begun do_exit()


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat``'s fields after the command name (state first), None if the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()


def _exiting(fields: list[bytes]) -> bool:
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING)


def proc_stat(pid: int, *, exiting_is_gone: bool = False) -> tuple[int, int, int, int] | None:
    """(ppid, pgid, sid, starttime in clock ticks) of a live process, None if it is gone or a zombie
    (or, with ``exiting_is_gone``, already inside the kernel's exit path: see ``exit_begun``)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X") or (exiting_is_gone and _exiting(fields)):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def exit_begun(pid: int) -> bool:
    """Whether ``pid`` is gone, a zombie, or already inside the kernel's exit path.

    The last case matters to anyone who learns of a death from its side effects: a killed server's
    sockets close (and a proxy ends the stream it relayed) before the process becomes a zombie, so
    a check that waits for the zombie can run in between and find it "alive"."""
    return proc_stat(pid, exiting_is_gone=True) is None


def stat_says_exiting(data: bytes) -> bool:
    """``/proc/PID/stat``'s text: zombie or dead state, or the PF_EXITING flag (field 9)."""
    return _exiting(data[data.rfind(b")") + 2:].split())


def all_stats() -> dict[int, tuple[int, int, int, int]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(root: int, stats: dict[int, tuple[int, int, int, int]] | None = None) -> set[int]:
    """Every live process below ``root``, plus every member of a group or session one of them leads."""
    stats = all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo += children.get(pid, ())
    # Groups/sessions a descendant created (setsid, setpgid): their members belong to us too.
    leaders = {pid for pid in found if stats[pid][1] == pid or stats[pid][2] == pid}
    if leaders:
        for pid, (_, pgid, sid, _) in stats.items():
            if pid != root and (pgid in leaders or sid in leaders):
                found.add(pid)
    return found


def _report(fd: int, line: str) -> None:
    """Tell pytest the child's pid (or why it could not start); a dead reader is not an error here."""
    try:
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    def __init__(self, watch_fd: int, grace_s: float):
        self.watch_fd = watch_fd
        self.grace_s = grace_s
        self.child: int | None = None
        self.child_status: int | None = None
        self.stop_requested = False
        self.quick = False              # SIGUSR1: a stop that need not wait the whole grace

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = status

    def end_all(self, grace_s: float) -> None:
        """SIGTERM every descendant, SIGKILL what is left after ``grace_s``, reap them all."""
        me = os.getpid()
        targets = descendants(me)
        signal_all(targets, signal.SIGTERM)
        signal_all(targets, signal.SIGCONT)      # a tree the pool paused (SIGSTOP) must see its SIGTERM
        deadline = time.monotonic() + grace_s
        while targets and time.monotonic() < deadline:
            time.sleep(0.05)
            self._reap()
            targets = descendants(me)
        if targets:                    # the child's log says why it ended killed
            print(f"supervisor: {len(targets)} process(es) still running after the {grace_s:g} s grace: SIGKILL",
                  file=sys.stderr, flush=True)
        for _ in range(100):           # whatever is left, and anything forked meanwhile
            if not targets:
                break
            signal_all(targets, signal.SIGKILL)
            time.sleep(0.02)
            self._reap()
            targets = descendants(me)
        self._reap()

    def run(self, cmd: list[str], report_fd: int) -> int:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            _report(report_fd, f"error {type(exc).__name__}: {exc}")
            return 127
        self.child = proc.pid
        proc.returncode = 0            # we reap it ourselves (waitpid(-1)); keep Popen from trying
        try:
            _report(report_fd, str(proc.pid))     # pytest may be dead already: then EOF follows
            return self._watch()
        finally:
            self.end_all(min(self.grace_s, PARENT_GONE_GRACE_S))   # whatever went wrong, nothing stays

    def _watch(self) -> int:
        parent_gone = False
        while self.child_status is None and not self.stop_requested:
            try:
                readable, _, _ = select.select([self.watch_fd], [], [], 0.2)
            except InterruptedError:
                readable = []
            if readable:
                try:
                    data = os.read(self.watch_fd, 64)
                except OSError:
                    data = b""
                if not data:
                    parent_gone = True
                    break
            self._reap()
        if self.stop_requested and not parent_gone and not self.quick:
            self.end_all(self.grace_s)
        else:   # pytest is gone, or the command died and what it left is of no use: be quick
            self.end_all(min(self.grace_s, PARENT_GONE_GRACE_S))
        status = self.child_status
        if status is None:
            return 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)    # exit the way the child did
            return 128 + sig
        return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        sys.stderr.write("usage: supervisor.py WATCH_FD REPORT_FD GRACE_S -- CMD...\n")
        return 2
    watch_fd, report_fd, grace_s, cmd = int(argv[0]), int(argv[1]), float(argv[2]), argv[4:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass                               # not Linux: direct children are still ended
    sup = Supervisor(watch_fd, grace_s)

    def on_term(signum, frame):
        sup.stop_requested = True

    def on_quick(signum, frame):
        sup.quick = sup.stop_requested = True

    def on_int(signum, frame):     # the terminal's Ctrl-C is pytest's to handle; a handler, not
        pass                       # SIG_IGN, so that CMD does not inherit an ignored SIGINT

    signal.signal(signal.SIGINT, on_int)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGUSR1, on_quick)
    return sup.run(cmd, report_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
