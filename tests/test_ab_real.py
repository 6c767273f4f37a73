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
         "--disagg-ab-server-args=--seed 1234", f"--disagg-ab-max-rounds={MIN_ROUNDS}", f"--disagg-json={out}",
         "--disagg-baseline=warn", f"--disagg-logs={tmp_path / 'logs'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "disagg: A/B" in text and "A/B verdict:" in text
    doc = json.loads(out.read_text())
    ab = doc["ab"]
    (pair,) = ab["pairs"]
    assert pair["deployment"] == {"A": "colocated-pc0", "B": "colocated-pc0-B"} and pair["rounds"] == MIN_ROUNDS
    assert {"ttft_ms", "tpot_ms", "e2el_ms", "output_throughput"} <= set(pair["verdicts"])
    for v in pair["verdicts"].values():
        assert v["verdict"] in verdicts.WORDS and v["rounds"] == MIN_ROUNDS
        assert v["lo"] <= v["ratio"] <= v["hi"]
    runs = [doc["runs"][i] for i in pair["runs"]]
    assert [r["side"] for r in runs] == [s for order in round_order(MIN_ROUNDS) for s in order]
    assert doc["deployments"]["colocated-pc0-B"]["config"]["extra_server_args"] == ["--seed", "1234"]
    assert doc["deployments"]["colocated-pc0"]["config"]["extra_server_args"] == []
    for side in "AB":
        assert ab["sides"][side]["fingerprint"]["vllm"], ab["sides"][side]
        assert all(r["fingerprint"]["vllm"] == ab["sides"][side]["fingerprint"]["vllm"] for r in runs if r["side"] == side)
