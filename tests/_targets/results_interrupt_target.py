"""Run only by tests/test_results_interrupt.py in a child pytest: one recorded run, then a
deployment whose process takes long to stop, so that the session is interrupted while it stops."""
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from pytest_disagg.children import processes
from pytest_disagg.deploy.pool import _Running

SLOW = ("import os, signal, sys, time\n"
        "def on_term(*a):\n"
        "    open(os.environ['DISAGG_STOPPING_MARKER'], 'w').close()\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "time.sleep(600)\n")


def test_records_a_run_and_leaves_a_slow_deployment(disagg_results, disagg_pool):
    config = SimpleNamespace(label=None, prefix_caching=False, device="cpu")
    deployment = SimpleNamespace(key="fake-pc0", config=config, medium=SimpleNamespace(name="fake"),
                                 to_json=lambda: {"key": "fake-pc0"})
    disagg_results.add_run(benchmark="interrupt", test="t", deployment=deployment,
                           run={"n_ok": 3, "n_failed": 0, "summary": {}, "scalars": {}})
    child = processes.start("slow server", [sys.executable, "-c", SLOW], env=dict(os.environ),
                            log_path=Path(os.environ["DISAGG_STOPPING_MARKER"] + ".log"), grace_s=20)
    disagg_pool._live["fake"] = _Running(deployment, [child])
