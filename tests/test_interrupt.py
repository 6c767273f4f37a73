"""Ctrl-C, SIGTERM and SIGKILL, during server start-up and mid-request: no process we started survives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_disagg.deploy import leftovers
from pytest_disagg.testing.procs import alive as _alive

TARGET = Path(__file__).parent / "_targets" / "interrupt_target.py"


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _tagged(runtime: Path) -> set[int]:
    """Every process on the machine that inherited this child session's runtime dir: whatever the
    child pytest started, however it re-parented, set its own session or renamed itself."""
    out = set()
    for p in psutil.process_iter():
        try:
            if p.environ().get("DISAGG_RUNTIME_DIR") == str(runtime) and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def _interrupt(tmp_path: Path, medium: str, sig: int, ready) -> tuple[int, set[int], str]:
    code, seen, log, _ = _interrupt_timed(tmp_path, medium, sig, ready)
    return code, seen, log


def _interrupt_timed(tmp_path: Path, medium: str, sig: int, ready) -> tuple[int, set[int], str, float]:
    """Run the target in a child pytest, send ``sig`` once ``ready``; the exit code, the processes
    seen, the child's log and the seconds until the last of its processes was gone."""
    marker = tmp_path / "streaming"
    runtime = tmp_path / "runtime"
    env = dict(os.environ, DISAGG_STREAMING_MARKER=str(marker), PYTHONUNBUFFERED="1", DISAGG_RUNTIME_DIR=str(runtime))
    log = open(tmp_path / "child.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(TARGET), f"--disagg-mediums={medium}", "--disagg-prefix-caching=off",
         "-p", "no:cacheprovider", "-q", "-s"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 400
    try:
        while not ready(proc.pid, marker):
            seen |= _descendants(proc.pid)
            assert proc.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached the point to interrupt"
            time.sleep(0.2)
        seen |= _descendants(proc.pid) | _tagged(runtime)
        t_kill = time.monotonic()
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    gone_by = time.monotonic() + 20
    while (_alive(seen) or _tagged(runtime)) and time.monotonic() < gone_by:
        time.sleep(0.1)
    clean_s = time.monotonic() - t_kill
    seen |= _tagged(runtime)
    return code, seen, (tmp_path / "child.log").read_text(), clean_s


def _server_starting(pid: int, marker: Path) -> bool:
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
                return True
        except psutil.NoSuchProcess:
            pass
    return False


def _streaming(pid: int, marker: Path) -> bool:
    return marker.exists()


def _nothing_left_for_the_next_session(tmp_path: Path) -> None:
    """No process and no busy port; a temp directory may be left (nobody alive could remove it):
    it is reported, and removed by the cleanup the next session offers."""
    stale = leftovers.find(tmp_path / "runtime")
    assert [(s.processes, s.ports, s.locks) for s in stale if s.processes or s.ports or s.locks] == [], \
        [s.lines() for s in stale]
    leftovers.clean(stale)
    assert all(not d.exists() for s in stale for d in s.dirs)


@pytest.mark.disagg
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["sigint", "sigterm", "sigkill"])
def test_interrupt_during_server_startup(tmp_path, sig):
    code, seen, log = _interrupt(tmp_path, "nixl-cpu", sig, _server_starting)
    assert seen, "no child process was seen"
    assert _alive(seen) == [], log[-3000:]
    assert code != 0
    _nothing_left_for_the_next_session(tmp_path)


@pytest.mark.disagg
def test_interrupt_mid_request(tmp_path):
    code, seen, log = _interrupt(tmp_path, "colocated", signal.SIGINT, _streaming)
    assert len(seen) >= 3, f"expected vLLM server, engine core and proxy among {seen}"
    assert _alive(seen) == [], log[-3000:]
    assert code == pytest.ExitCode.INTERRUPTED, log[-3000:]


@pytest.mark.disagg
def test_sigkill_mid_request(tmp_path):
    """pytest itself killed -9 (a CI job's time limit, the OOM killer): the supervisors end every
    server, EngineCore and proxy within seconds, and the next session finds nothing left."""
    code, seen, log = _interrupt(tmp_path, "colocated", signal.SIGKILL, _streaming)
    assert len(seen) >= 3, f"expected vLLM server, engine core and proxy among {seen}"
    assert _alive(seen) == [], log[-3000:]
    assert code == -signal.SIGKILL
    _nothing_left_for_the_next_session(tmp_path)


def _after(delay_s: float):
    t0 = time.monotonic()
    return lambda pid, marker: time.monotonic() - t0 >= delay_s


@pytest.mark.disagg
def test_sigkill_at_random_moments(tmp_path):
    """pytest killed -9 at random moments of a disaggregated run (collection, server start-up,
    self-check, a streaming request): nothing it started survives. DISAGG_SIGKILL_TRIES (default 1)
    and DISAGG_SIGKILL_HORIZON_S (default 60) set the tries and the latest moment."""
    import random

    tries = int(os.environ.get("DISAGG_SIGKILL_TRIES", "1"))
    horizon = float(os.environ.get("DISAGG_SIGKILL_HORIZON_S", "60"))
    rng = random.Random(os.environ.get("DISAGG_SIGKILL_SEED"))
    outcomes = []
    for i in range(tries):
        run_dir = tmp_path / f"try{i}"
        run_dir.mkdir()
        delay = rng.uniform(0.5, horizon)
        code, seen, log, clean_s = _interrupt_timed(run_dir, "nixl-cpu", signal.SIGKILL, _after(delay))
        left = _alive(seen)
        outcomes.append((round(delay, 1), len(seen), left, round(clean_s, 2)))
        print(f"sigkill try {i}: at {delay:.1f} s, {len(seen)} processes seen, {len(left)} left, "
              f"clean after {clean_s:.2f} s")
    assert [o for o in outcomes if o[2]] == [], outcomes
