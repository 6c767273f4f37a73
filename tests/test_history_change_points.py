"""Change points over a nightly series of results files: `baselines history --results ... --change-points`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_disagg.baseline import views
from pytest_disagg.cli import main


def nightly(tmp_path, medians, seed=0):
    """One results file per night (schema 2, as the plugin writes them), TTFT p50 from ``medians``;
    vLLM moves to 0.32.0 from night 20."""
    rng = np.random.default_rng(seed)
    paths = []
    for night, level in enumerate(medians):
        machine = {"cpu": "Xeon", "gpu": [], "gpu_count": 0, "vllm": "0.32.0" if night >= 20 else "0.31.0"}
        fp = {"machine": machine, "subject": {}, "machine_hash": f"h{int(night >= 20)}", "subject_hash": "s"}
        p50 = float(level * rng.normal(1.0, 0.02))
        run = {"benchmark": "load-sweep", "setup": "colocated", "load": "rate=2",
               "test": "tests/benchmarks/test_load_sweep.py::test_load_sweep[colocated-pc0]",
               "summary": {"ttft_ms": {"n": 40, "p50": p50, "ci": {"p50": [p50 * 0.97, p50 * 1.03]}}},
               "scalars": {"output_throughput": 100.0}, "fingerprint": fp}
        doc = {"schema_version": 2, "created": f"2026-01-{night + 1:02d}T03:00:00+00:00", "fingerprint": fp,
               "runs": [run], "deployments": {}, "derived": {}, "options": {}, "ab": []}
        path = tmp_path / f"night-{night:02d}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def test_a_step_in_nightly_results_is_found_where_it_happened(tmp_path, capsys):
    paths = nightly(tmp_path, [50.0] * 20 + [58.0] * 15)
    code = main(["baselines", "history", "ttft_ms", "--dir", str(tmp_path / "none"), "--results",
                 *map(str, paths), "--change-points"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 change point(s)" in out and "from 2026-01-21" in out and "vllm" in out
    line = next(l for l in out.splitlines() if "2026-01-21" in l and "<< shift" in l)
    assert "+1" in line.split("<< shift")[1]            # about +16 %


def test_flat_noise_has_no_change_point(tmp_path, capsys):
    paths = nightly(tmp_path, [50.0] * 30, seed=3)
    code = main(["baselines", "history", "ttft_ms", "--dir", str(tmp_path / "none"), "--results",
                 *map(str, paths), "--change-points"])
    out = capsys.readouterr().out
    assert code == 0 and "no change point" in out and "<< shift" not in out


def test_history_from_results_joins_the_baseline_series_id(tmp_path):
    docs = [(str(p), json.loads(p.read_text())) for p in nightly(tmp_path, [50.0, 50.0, 60.0, 60.0])]
    result = views.history(None, "ttft_ms", results=docs)
    assert {p["benchmark"] for p in result.points} == {
        "test_load_sweep::test_load_sweep[colocated-pc0]::load-sweep[rate=2]"}
    assert [p["fingerprint"] for p in result.points] == ["h0"] * 4
    with pytest.raises(views.UnknownIdError, match="no baseline or results file has metric 'nope'"):
        views.history(None, "nope", results=docs)


def test_bad_pvalue_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["baselines", "history", "ttft_ms", "--cp-pvalue", "2"])
    assert "--cp-pvalue '2': must be between 0 and 1" in capsys.readouterr().err
