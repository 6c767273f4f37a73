"""A/B on a real deployment: ``--disagg-ab=same`` with a server argument that cannot change the
figures much (``--seed``: the workload's output lengths are fixed), on colocated, kept short.

Runs the A/B benchmark in a child pytest (the A/B options are per session) and checks what it
wrote: the pair and its verdicts, runs tagged A and B in the alternating order, B's servers
started with the extra argument, both sides' fingerprints naming the installed vLLM."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_disagg import verdicts
from pytest_disagg.ab.decide import round_order
from pytest_disagg.ab.options import MIN_ROUNDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.disagg
def test_ab_same_software_other_seed_on_colocated(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/benchmarks/test_ab_latency.py", "-q", "-p", "no:cacheprovider",
         "--disagg-mediums=colocated", "--disagg-prefix-caching=off", "--disagg-ab=same",
         "--disagg-ab-server-args=--seed 1234", f"--disagg-ab-max-rounds={MIN_ROUNDS}",
         "--disagg-ab-fresh=no", f"--disagg-json={out}",
         "--disagg-baseline=warn", f"--disagg-logs={tmp_path / 'logs'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "disagg: A/B" in text and "A/B verdict:" in text
    doc = json.loads(out.read_text())
    pairs, setup = doc["ab"], doc["options"]["ab"]
    assert {p["metric"] for p in pairs} >= {"ttft_ms", "tpot_ms", "e2el_ms", "output_throughput"}
    for p in pairs:
        assert (p["deployment"], p["deployment_b"]) == ("colocated-pc0", "colocated-pc0-B")
        assert p["verdict"] in verdicts.WORDS and p["rounds"] == MIN_ROUNDS
        if p["ci"] is None:
            # A round whose median TPOT is 0 (every token of most requests in one stream chunk: a
            # loaded 2-core box coalesces them) has no ratio; the verdict says so instead of guessing.
            assert p["metric"] == "tpot_ms" and p["verdict"] == verdicts.UNDECIDED and "is 0" in p["reason"], p
        else:
            assert p["ci"][0] <= p["ratio"] <= p["ci"][1], p
    runs = doc["runs"]
    assert [r["side"] for r in runs] == [s for order in round_order(MIN_ROUNDS) for s in order]
    assert pairs[0]["a_runs"] == [i for i, r in enumerate(runs) if r["side"] == "A"]
    assert doc["deployments"]["colocated-pc0-B"]["config"]["extra_server_args"] == ["--seed", "1234"]
    assert doc["deployments"]["colocated-pc0"]["config"]["extra_server_args"] == []
    for side in "AB":
        version = setup["sides"][side]["fingerprint"]["vllm"]
        assert version, setup["sides"][side]
        assert all(r["fingerprint"]["machine"]["vllm"] == version for r in runs if r["side"] == side)
        assert all(r["fingerprint"]["subject"]["workload"] for r in runs if r["side"] == side)
