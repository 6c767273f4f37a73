"""The results JSON, and the run kept of it, survive a Ctrl-C or SIGTERM that comes after the
tests ran, while the deployments are being stopped (no vLLM: a fake deployment whose process is
slow to stop)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TARGET = Path(__file__).parent / "_targets" / "results_interrupt_target.py"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_results_are_written_when_interrupted_while_deployments_stop(tmp_path, sig):
    marker, out = tmp_path / "stopping", tmp_path / "results" / "results.json"
    env = dict(os.environ, DISAGG_STOPPING_MARKER=str(marker), DISAGG_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(TARGET), f"--disagg-json={out}", f"--disagg-save-dir={tmp_path / 'runs'}",
         "-p", "no:cacheprovider", "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():         # the session is stopping its deployments now
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the slow process was never asked to stop"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        output = proc.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out.exists(), output[-3000:]
    doc = json.loads(out.read_text())
    assert [r["benchmark"] for r in doc["runs"]] == ["interrupt"] and doc["runs"][0]["n_ok"] == 3
    assert not [p.name for p in out.parent.iterdir() if p.name != out.name], "a temporary file was left"
    (run,) = (tmp_path / "runs").iterdir()                  # the run kept whole, beside nothing else
    assert [p.name for p in run.iterdir()] == ["results.json"] and (run / "results.json").read_bytes() == out.read_bytes()
