"""benchmarks/gate_power.py's statistics on a synthetic samples file (few repetitions, no vLLM):
the samples file is checked, the scenarios mean what they say, and the last line has its format."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "gate_power.py"


@pytest.fixture(scope="module")
def gp():
    spec = importlib.util.spec_from_file_location("gate_power_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def samples_file(tmp_path, *, drift=(1.0, 1.0, 1.0), delayed_scale=1.3, n=300, sigma=0.05):
    def run(seed, scale):
        rng = np.random.default_rng(seed)
        ttft = rng.lognormal(np.log(10.0), sigma, n) * scale
        return {"delay_ms": 0.0, "samples": {"ttft_ms": ttft.tolist(), "tpot_ms": rng.lognormal(0.5, sigma, n).tolist(),
                                             "e2el_ms": (ttft + 30).tolist()}}
    entry = {"runs": [run(i, d) for i, d in enumerate(drift)], "injected_delay_ms": 0.5,
             "delayed_runs": [run(10, delayed_scale), run(11, delayed_scale)]}
    doc = {"schema": "pytest-disagg gate-power samples 1", "mediums": {"colocated": entry}}
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(doc))
    return path


def test_scenarios_on_stable_runs(gp, tmp_path):
    entry = gp.load_samples(samples_file(tmp_path))["mediums"]["colocated"]
    aa = gp.simulate(entry, gp.AA_RUNS, 200, 60, 0.99, seed=1)
    assert aa.gate(0.02).value <= 0.05
    proxy = gp.simulate(entry, gp.AB_PROXY, 200, 60, 0.99, seed=1)
    assert proxy.gate(0.02).value == 1.0 and proxy.fixed_rule(0.05).value == 1.0
    added = gp.simulate(entry, gp.AB_ADDED, 200, 60, 0.99, seed=1, metrics=("ttft_ms",), shift=0.3)
    assert added.gate(0.05).value == 1.0


def test_run_to_run_drift_shows_up_only_across_runs(gp, tmp_path):
    entry = gp.load_samples(samples_file(tmp_path, drift=(1.0, 1.12, 0.9)))["mediums"]["colocated"]
    assert gp.simulate(entry, gp.AA_RUNS, 200, 60, 0.99, seed=2).gate(0.02).value > 0.2
    assert gp.simulate(entry, gp.AA_POOLED, 200, 60, 0.99, seed=2).gate(0.02).value <= 0.05


def test_main_prints_the_line(gp, tmp_path, capsys):
    path = samples_file(tmp_path)
    assert gp.main(["--samples", str(path), "--reps", "40", "--sweep", "50,200", "--tolerances", "2%,5%",
                    "--shifts", "10%,40%"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"gate_power_5pct=\d\.\d{3} gate_false_alarm=\d\.\d{3} samples=\d+", last)


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ('{"schema": "other"}', "not a gate-power samples file"),
    ('{"schema": "pytest-disagg gate-power samples 1", "mediums": {"x": {"runs": []}}}', "at least 2 normal runs"),
])
def test_bad_samples_files_are_named(gp, tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(gp.SamplesFileError, match=message) as info:
        gp.load_samples(path)
    assert str(path) in str(info.value)


def test_wilson_interval(gp):
    rate = gp.Rate(10, 1000)
    lo, hi = rate.wilson()
    assert lo < 0.01 < hi and 0.004 < lo and hi < 0.02
