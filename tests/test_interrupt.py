"""Ctrl-C and SIGTERM, during server start-up and mid-request: no process we started survives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

TARGET = Path(__file__).parent / "_targets" / "interrupt_target.py"


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return out


def _interrupt(tmp_path: Path, medium: str, sig: int, ready) -> tuple[int, set[int], str]:
    marker = tmp_path / "streaming"
    env = dict(os.environ, DISAGG_STREAMING_MARKER=str(marker), PYTHONUNBUFFERED="1")
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
        seen |= _descendants(proc.pid)
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    gone_by = time.monotonic() + 20
    while _alive(seen) and time.monotonic() < gone_by:
        time.sleep(0.2)
    return code, seen, (tmp_path / "child.log").read_text()


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


@pytest.mark.disagg
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_during_server_startup(tmp_path, sig):
    code, seen, log = _interrupt(tmp_path, "nixl-cpu", sig, _server_starting)
    assert seen, "no child process was seen"
    assert _alive(seen) == [], log[-3000:]
    assert code != 0


@pytest.mark.disagg
def test_interrupt_mid_request(tmp_path):
    code, seen, log = _interrupt(tmp_path, "colocated", signal.SIGINT, _streaming)
    assert len(seen) >= 3, f"expected vLLM server, engine core and proxy among {seen}"
    assert _alive(seen) == [], log[-3000:]
    assert code == pytest.ExitCode.INTERRUPTED, log[-3000:]
