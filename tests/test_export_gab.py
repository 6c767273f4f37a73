"""``--format gab-smaller|gab-bigger``: github-action-benchmark's custom JSON from the committed
results — series that keep their names when a re-probe moves every rate, each metric in its unit,
the median the gate judges as the value."""
from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import pytest

from pytest_disagg.cli import main
from pytest_disagg.export import from_document, gab
from pytest_disagg.metrics import METRICS
from pytest_disagg.results import load_results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = [ROOT / "docs" / "example-report" / "results.json", ROOT / "docs" / "gpu-report" / "results.json"]


def entries(doc: dict, fmt: str) -> list[dict]:
    return gab.document(from_document(doc), fmt)


def names(doc: dict) -> set[str]:
    return {e["name"] for fmt in gab.FORMATS for e in entries(doc, fmt)}


def reprobed(doc: dict, factor: float) -> dict:
    """The same runs as if the capacity probe had found ``factor`` times the capacity."""
    out = copy.deepcopy(doc)
    for run in out["runs"]:
        match = re.fullmatch(r"rate=([0-9.]+)/s", run.get("load") or "")
        if match:
            run["load"] = f"rate={float(match.group(1)) * factor:g}/s"
        for key in ("rate", "capacity_rps"):
            if key in run.get("extra", {}):
                run["extra"][key] *= factor
    return out


def laddered(doc: dict) -> dict:
    """Only the runs that carry their rung (the load sweep's ``ladder_index``)."""
    return {**doc, "runs": [r for r in doc["runs"] if "ladder_index" in r.get("extra", {})]}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_a_reprobe_renames_no_series_of_a_ladder(path):
    doc = laddered(load_results(path))
    moved = reprobed(doc, 1.37)
    assert [r["load"] for r in moved["runs"]] != [r["load"] for r in doc["runs"]]
    assert names(doc) and names(moved) == names(doc)
    assert all("rate=" not in n for n in names(doc))
    loads = {e["extra"].split(";")[0] for fmt in gab.FORMATS for e in entries(moved, fmt)}
    assert loads == {f"load {r['load']}" for r in moved["runs"] if r.get("valid", True)}   # the probed rate is kept


def test_the_recorded_gate_name_names_the_series():
    """Files written since bench.run records ``gate_name``: every benchmark (energy too, which has no
    ladder index) is named by the rung the gate judges, not by its rate."""
    doc = load_results(COMMITTED[1])
    for run in doc["runs"]:
        run["gate_name"] = f"{run['benchmark']}[r{[2.5, 5.0, 7.5, 10.0].index(run['extra']['rate'])}]"
    assert names(reprobed(doc, 0.8)) == names(doc)
    assert "test_energy_per_token[colocated-pc0]::energy[r2]::energy_j_per_token" in names(doc)


def test_old_files_without_a_label_fall_back_to_the_load_point():
    doc = load_results(COMMITTED[1])
    energy = [n for n in names(doc) if n.startswith("test_energy_per_token")]
    assert energy and all("::rate=2.5/s::" in n or "::rate=7.5/s::" in n for n in energy)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_each_metric_in_its_own_unit_and_direction(path):
    doc = load_results(path)
    smaller, bigger = entries(doc, "gab-smaller"), entries(doc, "gab-bigger")
    for fmt, got in (("gab-smaller", smaller), ("gab-bigger", bigger)):
        for e in got:
            metric = METRICS.get(e["name"].rsplit("::", 1)[-1])
            if metric is not None:
                assert (e["unit"], metric.direction) == (metric.unit, gab.FORMATS[fmt])
    assert {e["unit"] for e in bigger} <= {"tok/s", "req/s"} and "ms" in {e["unit"] for e in smaller}
    assert not {e["name"] for e in smaller} & {e["name"] for e in bigger}


def test_energy_per_token_in_j_per_token():
    smaller = entries(load_results(COMMITTED[1]), "gab-smaller")
    assert "J/token" in {e["unit"] for e in smaller if e["name"].endswith("::energy_j_per_token")}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_values_are_the_medians_and_ranges_their_intervals(path):
    doc = load_results(path)
    rf = from_document(doc)
    expected = {}
    for fig in rf.figures:
        stored = fig.run.get("summary", {}).get(fig.metric.name)
        if stored is not None:
            expected[gab.entry_name(fig)] = (stored["p50"], "{:.4g}–{:.4g}".format(*stored["ci"]["p50"]))
        else:
            expected[gab.entry_name(fig)] = (fig.run["scalars"][fig.metric.name], None)
    got = {e["name"]: e for fmt in gab.FORMATS for e in gab.document(rf, fmt)}
    assert set(got) == set(expected)
    for name, (median, span) in expected.items():
        assert got[name]["value"] == pytest.approx(median, rel=1e-12), name
        assert got[name].get("range") == span


@pytest.mark.parametrize("fmt", list(gab.FORMATS))
def test_the_cli_writes_what_the_action_reads(tmp_path, fmt):
    out = tmp_path / "trend" / f"{fmt}.json"
    umask = os.umask(0o022)
    try:
        assert main(["export", str(COMMITTED[1]), "--format", fmt, "-o", str(out)]) == 0
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644
    data = json.loads(out.read_text())
    assert isinstance(data, list) and data
    for e in data:
        assert isinstance(e["name"], str) and isinstance(e["unit"], str) and e["unit"]
        assert isinstance(e["value"], float) and math.isfinite(e["value"])
        assert all(isinstance(e[k], str) for k in ("range", "extra") if k in e)
        assert re.search(r"n=\d+; gate .*; fingerprint [0-9a-f]{12}", e["extra"])
    assert len({e["name"] for e in data}) == len(data)


def test_a_direction_without_figures_writes_no_file(tmp_path, capsys):
    doc = load_results(COMMITTED[0])
    for run in doc["runs"]:
        run["scalars"] = {}
    source = tmp_path / "results.json"
    source.write_text(json.dumps(doc))
    out = tmp_path / "bigger.json"
    assert main(["export", str(source), "--format", "gab-bigger", "-o", str(out)]) == 0
    assert not out.exists() and "no higher-is-better figure" in capsys.readouterr().err


def test_one_results_file_per_trend_file(tmp_path, capsys):
    code = main(["export", *map(str, COMMITTED), "--format", "gab-smaller", "-o", str(tmp_path / "x.json")])
    assert code == 2 and "--format gab-smaller takes one results file, got 2" in capsys.readouterr().err


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_otava_series_keep_their_names_across_a_reprobe(path, tmp_path):
    """Otava (and the CSV's series) key on the same stable load label as github-action-benchmark."""
    from pytest_disagg.export import series

    doc = laddered(load_results(path))
    before, _ = series.write_otava([from_document(doc)], tmp_path / "a")
    after, _ = series.write_otava([from_document(reprobed(doc, 1.37))], tmp_path / "b")
    assert before and sorted(after) == sorted(before)
    assert all("rate=" not in n for n in before)
