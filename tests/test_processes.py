"""Child processes under their supervisor (no vLLM): they die with the session whatever kills it,
report their own exit status, and a killed session's leftovers are found and removed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_disagg.children import processes
from pytest_disagg.children.supervisor import proc_stat
from pytest_disagg.deploy import leftovers
from pytest_disagg.testing.procs import alive as _alive

TARGETS = Path(__file__).parent / "_targets"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Every test its own runtime dir: state files of other sessions on this machine stay out."""
    path = tmp_path / "runtime"
    monkeypatch.setenv("DISAGG_RUNTIME_DIR", str(path))
    # A session of its own too: in a full run the pool's live deployments (children, temp dirs)
    # are in the module's session and would be in this test's state file.
    monkeypatch.setattr(processes, "_session", processes._Session())
    return path


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_tree(tmp_path, name="tree") -> processes.Child:
    log = tmp_path / f"{name}.log"
    child = processes.start(name, [sys.executable, str(TARGETS / "process_tree.py")], env=dict(os.environ),
                            log_path=log, grace_s=2)
    _wait_for(lambda: "tree up" in log.read_text(), 60, "the process tree")
    return child


def _tree(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_whole_tree_dies_with_its_owner_whatever_kills_it(tmp_path, runtime_dir, sig):
    """The owner starts the tree from a thread that exits (PR_SET_PDEATHSIG would fire early) and
    is then killed: every descendant — the setsid()ed grandchild and the multiprocessing children
    included — is gone within seconds, and the state file names the dead owner."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    owner = subprocess.Popen([sys.executable, str(TARGETS / "process_owner.py"), str(tmp_path / "tree.log")],
                             env=env, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert owner.stdout.readline().strip() == b"ready"
        _wait_for(lambda: "tree up" in (tmp_path / "tree.log").read_text(), 60, "the process tree")
        _wait_for(lambda: len(_tree(owner.pid)) >= 6, 30, "supervisor, tree, spawn child, tracker, grandchild, daemon")
        seen = _tree(owner.pid)
        states = list(runtime_dir.glob("session-*.json"))
        assert [s.name for s in states] == [f"session-{owner.pid}.json"]
        os.kill(owner.pid, sig)
        owner.wait(timeout=30)
        t0 = time.monotonic()
        while _alive(seen) and time.monotonic() - t0 < 15:
            time.sleep(0.05)
        assert _alive(seen) == [], "left behind after the owner died"
    finally:
        if owner.poll() is None:
            owner.kill()
    # The next session sees a killed session that left nothing but its state file.
    stale = leftovers.find(runtime_dir)
    assert [s.owner_pid for s in stale] == [owner.pid] and stale[0].empty(), [s.lines() for s in stale]


def test_stop_ends_the_tree_and_returns_the_childs_own_status(tmp_path, runtime_dir):
    child = _start_tree(tmp_path)
    tree = _tree(child.supervisor.pid)
    assert child.pid in tree and len(tree) >= 5
    state = json.loads(next(runtime_dir.glob("session-*.json")).read_text())
    assert [p["pid"] for p in state["processes"]] == [child.pid]
    assert processes.stop(child) == -signal.SIGTERM
    _wait_for(lambda: not _alive(tree), 10, "the tree to go")
    assert not list(runtime_dir.glob("session-*.json")), "the state file outlived the last child"


def test_a_killed_child_reports_its_signal_and_its_orphans_are_ended(tmp_path):
    child = _start_tree(tmp_path)
    tree = _tree(child.supervisor.pid)
    os.kill(child.pid, signal.SIGKILL)
    _wait_for(lambda: child.poll() is not None, 15, "the supervisor to notice")
    assert child.poll() == -signal.SIGKILL
    assert "killed by SIGKILL" in child.status_text()
    _wait_for(lambda: not _alive(tree), 10, "the orphans to be ended")
    processes.stop(child)


def test_exit_code_and_log_tail_of_a_child_that_fails_to_become_healthy(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('ValueError: no such model'); sys.exit(3)"]
    with pytest.raises(processes.StartError) as info:
        processes.start_healthy("fake server", cmd, lambda: False, 30, env=dict(os.environ),
                                log_path=tmp_path / "fail.log")
    text = str(info.value)
    assert "fake server" in text and "exited with code 3 before becoming healthy" in text
    assert "ValueError: no such model" in text and str(tmp_path / "fail.log") in text
    assert processes.live_children() == []


def test_a_child_that_never_becomes_healthy_is_stopped_after_the_timeout(tmp_path):
    cmd = [sys.executable, "-c", "import time; time.sleep(600)"]
    with pytest.raises(processes.StartError, match="not healthy after 1 s"):
        processes.start_healthy("slow", cmd, lambda: False, 1, env=dict(os.environ), log_path=tmp_path / "s.log")
    assert processes.live_children() == []


def test_a_command_that_cannot_run_is_a_start_error(tmp_path):
    with pytest.raises(processes.StartError, match="could not be started: error FileNotFoundError"):
        processes.start("nothing", [str(tmp_path / "no-such-binary")], env=dict(os.environ),
                        log_path=tmp_path / "n.log")


def test_healthy_when_the_check_passes(tmp_path):
    flag = tmp_path / "up"
    cmd = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(600)"]
    child = processes.start_healthy("ok", cmd, flag.exists, 30, env=dict(os.environ), log_path=tmp_path / "ok.log")
    try:
        assert child.alive()
    finally:
        assert processes.stop(child, grace_s=2) == -signal.SIGTERM


def test_a_given_up_stop_does_not_wait_the_whole_grace(tmp_path):
    """A child that ignores SIGTERM (as a vLLM server still starting does) runs out its grace; a
    stop that allows less than the child's grace (a given-up start) gets the quick one instead.
    The supervisor's line in the child's log says which grace ran out."""
    cmd = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('up', flush=True); time.sleep(600)"]
    for name, grace, stop_grace, says in (("patient", 2, None, "after the 2 s grace"),
                                          ("given-up", 600, 1, f"after the {processes.QUICK_GRACE_S:g} s grace")):
        log = tmp_path / f"{name}.log"
        child = processes.start(name, cmd, env=dict(os.environ), log_path=log, grace_s=grace)
        _wait_for(lambda: "up" in log.read_text(), 60, "the child")
        assert processes.stop(child, grace_s=stop_grace) == -signal.SIGKILL
        assert says in log.read_text(), log.read_text()


def test_a_stuck_supervisor_is_ended_from_pytest_and_the_log_says_so(tmp_path, monkeypatch):
    """A supervisor that does not end in time (here stopped with SIGSTOP; in CI, starved beside real
    deployments) has its group killed from pytest; its own line never comes, so pytest's does."""
    monkeypatch.setattr(processes, "STUCK_SUPERVISOR_S", 0.5)
    log = tmp_path / "stuck.log"
    child = processes.start("stuck", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
                            env=dict(os.environ), log_path=log, grace_s=1)
    _wait_for(lambda: "up" in log.read_text(), 60, "the child")
    os.kill(child.supervisor.pid, signal.SIGSTOP)
    processes.stop(child)
    assert not child.alive() and child.supervisor.poll() == -signal.SIGKILL
    assert "the supervisor had not ended 0.5 s after its grace: SIGKILL to its process group" in log.read_text()


# --- leftovers of a killed session --------------------------------------------------------
def _orphan_group() -> subprocess.Popen:
    """A process group as a killed session with a killed supervisor would leave it."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_state(runtime_dir: Path, owner: int, procs: list[dict], dirs: list[str]) -> Path:
    runtime_dir.mkdir(parents=True, exist_ok=True)
    path = runtime_dir / f"session-{owner}.json"
    path.write_text(json.dumps({"pid": owner, "starttime": 1, "argv": ["pytest", "-m", "disagg"],
                                "processes": procs, "dirs": dirs}))
    return path


def test_leftovers_are_found_by_group_and_start_time_and_removed(tmp_path, runtime_dir):
    group = _orphan_group()
    stranger = _orphan_group()
    tmp_dir = tmp_path / "pytest-disagg-abc"
    tmp_dir.mkdir()
    not_ours = tmp_path / "important"
    not_ours.mkdir()
    try:
        ours = {"name": "vLLM decode server", "pid": group.pid, "pgid": group.pid,
                "starttime": proc_stat(group.pid)[3], "ports": [], "log": "x"}
        # The recorded group id is a live process started at another time: a stranger, never touched.
        theirs = {"name": "proxy", "pid": stranger.pid, "pgid": stranger.pid,
                  "starttime": proc_stat(stranger.pid)[3] - 1, "ports": [], "log": "y"}
        state = _write_state(runtime_dir, _dead_pid(), [ours, theirs], [str(tmp_dir), str(not_ours)])
        _write_state(runtime_dir, os.getpid(), [ours], [])          # a live session: not stale
        stale = leftovers.find(runtime_dir)
        assert len(stale) == 1
        assert list(stale[0].processes) == [group.pid]
        assert stale[0].dirs == [tmp_dir]
        assert any(f"process {group.pid}" in line for line in stale[0].lines())
        done = leftovers.clean(stale)
        assert f"ended process {group.pid}" in done and f"removed {tmp_dir}" in done
        assert group.wait(timeout=10) is not None
        assert stranger.poll() is None and not_ours.exists() and not tmp_dir.exists() and not state.exists()
    finally:
        for p in (group, stranger):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_busy_recorded_port_is_reported(tmp_path, runtime_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _write_state(runtime_dir, _dead_pid(), [{"name": "proxy", "pid": _dead_pid(), "pgid": _dead_pid(),
                                                 "starttime": 1, "ports": [port]}], [])
        (stale,) = leftovers.find(runtime_dir)
        assert stale.ports == [port] and f"port {port} still in use" in "\n".join(stale.lines())


def test_a_held_baseline_lock_of_a_leftover_is_reported(tmp_path, runtime_dir):
    lock = tmp_path / ".lock"
    lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, time; f = open({str(lock)!r}); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"],
                              start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        _write_state(runtime_dir, _dead_pid(), [{"name": "pytest worker", "pid": holder.pid, "pgid": holder.pid,
                                                 "starttime": proc_stat(holder.pid)[3], "ports": []}], [])
        (stale,) = leftovers.find(runtime_dir, lock_files=[lock])
        assert stale.locks == {str(lock): holder.pid}
    finally:
        holder.kill()
        holder.wait()


def test_the_plugin_reports_leftovers_and_removes_them_on_request(pytester, runtime_dir):
    group = _orphan_group()
    try:
        _write_state(runtime_dir, _dead_pid(), [{"name": "vLLM prefill server", "pid": group.pid, "pgid": group.pid,
                                                 "starttime": proc_stat(group.pid)[3], "ports": []}], [])
        pytester.makepyfile("def test_nothing():\n    pass\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.stdout.fnmatch_lines(["*a killed earlier session left these behind*", f"*process {group.pid}:*",
                                     "*rerun with --disagg-cleanup-stale*"])
        assert group.poll() is None
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--disagg-cleanup-stale")
        result.stdout.fnmatch_lines([f"*ended process {group.pid}*"])
        assert group.wait(timeout=10) is not None
        assert not list(runtime_dir.glob("session-*.json"))
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()


def test_run_captures_output_and_ends_the_tree_on_timeout(tmp_path):
    done = processes.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout=60)
    assert (done.returncode, done.stdout) == (3, "out\n")
    pidfile = tmp_path / "pid"
    script = ("import pathlib, subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
              f"pathlib.Path({str(pidfile)!r}).write_text(str(p.pid)); time.sleep(600)")
    with pytest.raises(subprocess.TimeoutExpired):
        processes.run([sys.executable, "-c", script], timeout=5)
    grandchild = int(pidfile.read_text())
    _wait_for(lambda: not _alive([grandchild]), 10, "the helper's child to be ended")


def test_a_process_counts_as_dead_once_its_exit_has_begun_not_only_once_it_is_a_zombie():
    """A killed server's sockets close before it turns zombie, so the proxy can end a test's stream
    while /proc still lists the server: the kernel's PF_EXITING flag is what says it is dying."""
    from pytest_disagg.children.supervisor import PF_EXITING, exit_begun, stat_says_exiting

    own = Path("/proc/self/stat").read_bytes()
    assert not stat_says_exiting(own) and not exit_begun(os.getpid())
    head, tail = own[:own.rfind(b")") + 2], own[own.rfind(b")") + 2:].split()
    tail[6] = str(int(tail[6]) | PF_EXITING).encode()
    assert stat_says_exiting(head + b" ".join(tail))

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    _wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_bytes().split(b") ")[1][:1] == b"Z", 30, "a zombie")
    assert exit_begun(child.pid)              # not reaped yet: a zombie
    child.wait()
    assert exit_begun(child.pid)              # reaped: gone
