"""A vLLM server that dies mid-run (real CPU deployments, nixl-cpu): the failing test names the
stage, the server's exit status and its log tail; the next test gets a fresh deployment."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pytest_disagg.children import processes
from pytest_disagg.deploy import DeploymentError
from pytest_disagg.deploy.pytest_plugin import unavailable_reason
from pytest_disagg.session import registry_of

TARGET = Path(__file__).parent / "_targets" / "server_death_target.py"


@pytest.mark.disagg
def test_decode_server_killed_mid_request_fails_that_test_and_the_next_gets_a_fresh_one(tmp_path, pytestconfig):
    reason = unavailable_reason(pytestconfig, registry_of(pytestconfig).get("nixl-cpu"))
    if reason:
        pytest.skip(reason)
    pids = tmp_path / "pids"
    env = dict(os.environ, DISAGG_PIDS_FILE=str(pids), DISAGG_RUNTIME_DIR=str(tmp_path / "runtime"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(TARGET), "--disagg-mediums=nixl-cpu", "--disagg-prefix-caching=off",
         "-p", "no:cacheprovider", "-rA", "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
    )
    out = run.stdout.decode(errors="replace")
    assert "1 failed, 1 passed" in out, out[-6000:]
    assert "a process died (during test test_decode_killed_mid_request[nixl-cpu-pc0])" in out, out[-6000:]
    assert "vLLM decode server (pid" in out and "was killed by SIGKILL (exit status -9)" in out, out[-6000:]
    assert "last 30 log lines" in out
    first, second = pids.read_text().split()
    assert first != second, "the second test got the dead deployment"
    assert "failed earlier in this session" not in out


@pytest.mark.disagg
def test_decode_engine_core_killed_during_start_up_names_the_stage_then_starts_again(disagg_pool, disagg_config,
                                                                                     pytestconfig):
    reason = unavailable_reason(pytestconfig, registry_of(pytestconfig).get("nixl-cpu"))
    if reason:
        pytest.skip(reason)
    config = disagg_config("nixl-cpu", prefix_caching=False, variant="death")
    killed: list[str] = []

    def kill_decode_engine_core():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            for child in processes.live_children():
                if child.name != "vLLM decode server":
                    continue
                try:
                    for p in psutil.Process(child.pid).children(recursive=True):
                        if "EngineCore" in p.name():
                            p.kill()
                            killed.append(f"{p.pid} {p.name()}")
                            return
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_decode_engine_core, daemon=True)
    watcher.start()
    with pytest.raises(DeploymentError) as info:
        disagg_pool.get(config)
    watcher.join(timeout=5)
    assert killed, "no decode EngineCore was seen"
    text = str(info.value)
    assert "failed at stage 'server start-up'" in text, text[-4000:]
    assert "vLLM decode server (pid" in text and "before becoming healthy" in text, text[-4000:]
    assert "last 50 log lines" in text
    deployment = disagg_pool.get(config)          # started again, not "failed earlier in this session"
    assert deployment.selfcheck is None or deployment.selfcheck["passed"]
    disagg_pool.release(config)
