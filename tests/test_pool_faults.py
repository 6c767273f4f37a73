"""The pool when a process of a deployment dies (fake processes, no vLLM): the error names the stage,
the dead process's exit status and its log tail; the deployment is started afresh next time."""
from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from pytest_disagg.children import processes
from pytest_disagg.deploy.pool import MAX_RESTARTS, DeploymentConfig, DeploymentError, DeploymentPool
from pytest_disagg.mediums import MediumRegistry

SERVER = "import sys, time; print('RuntimeError: engine core busy', flush=True); time.sleep(600)"


class FakePool(DeploymentPool):
    """Starts one sleeping "decode server" per deployment; ``plan`` says what each start does."""

    def __init__(self, tmp_path, plan):
        super().__init__(MediumRegistry(), logs_dir=tmp_path)
        self.plan = list(plan)
        self.started = 0

    def _start_stages(self, config, children, stage):
        self.started += 1
        stage[0] = "server start-up"
        child = processes.start("vLLM decode server", [sys.executable, "-c", SERVER], env=dict(os.environ),
                                log_path=self.logs_dir / f"decode-{self.started}.log", grace_s=2)
        children.append(child)
        deadline = time.monotonic() + 30
        while "engine core busy" not in child.log_path.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        what = self.plan.pop(0) if self.plan else "ok"
        stage[0] = "self-check"
        if what == "killed":
            os.kill(child.pid, signal.SIGKILL)
            raise DeploymentError("HTTP Error 502: Bad Gateway")
        if what == "timeout":
            raise DeploymentError("self-check timed out")
        return {"decode_pid": child.pid, "children": children}


@pytest.fixture
def config():
    return DeploymentConfig(medium="nixl-cpu")


def test_a_server_killed_during_the_self_check_is_named_and_the_deployment_restarted(tmp_path, config):
    pool = FakePool(tmp_path, ["killed"])
    try:
        with pytest.raises(DeploymentError) as info:
            pool.get(config)
        text = str(info.value)
        assert "failed at stage 'self-check': HTTP Error 502: Bad Gateway" in text
        assert "vLLM decode server (pid" in text and "was killed by SIGKILL (exit status -9)" in text
        assert "RuntimeError: engine core busy" in text and "last 30 log lines" in text
        assert pool.deaths and pool.deaths[0]["stage"] == "self-check"
        assert processes.live_children() == []
        deployment = pool.get(config)          # the next test: started again, not "failed earlier"
        assert pool.started == 2 and deployment["children"][0].alive()
    finally:
        pool.close()


def test_a_server_that_dies_between_tests_is_reported_and_replaced(tmp_path, config):
    pool = FakePool(tmp_path, [])
    try:
        first = pool.get(config)
        assert pool.check(config) is None and pool.get(config) is first
        os.kill(first["decode_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while first["children"][0].alive():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = pool.check(config, stage="during test test_load")
        assert "a process died (during test test_load)" in text and "killed by SIGKILL" in text
        assert "RuntimeError: engine core busy" in text
        second = pool.get(config)
        assert second["decode_pid"] != first["decode_pid"] and pool.started == 2
    finally:
        pool.close()


def test_restarts_are_bounded_and_a_failure_without_a_death_is_remembered(tmp_path, config):
    pool = FakePool(tmp_path, ["killed"] * (MAX_RESTARTS + 1) + ["timeout"])
    try:
        for _ in range(MAX_RESTARTS + 1):
            with pytest.raises(DeploymentError, match="killed by SIGKILL"):
                pool.get(config)
        with pytest.raises(DeploymentError, match="failed earlier in this session"):
            pool.get(config)
        assert pool.started == MAX_RESTARTS + 1
        other = DeploymentConfig(medium="disk")
        pool.plan = ["timeout"]
        with pytest.raises(DeploymentError, match="failed at stage 'self-check': self-check timed out"):
            pool.get(other)
        with pytest.raises(DeploymentError, match="failed earlier in this session"):
            pool.get(other)
    finally:
        pool.close()
