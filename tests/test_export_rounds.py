"""Exports keep what a results file holds: every A/B round in the CSV, the rounds Otava gets
collapsed said in its input and on stderr, and files readable like any other (0644)."""
from __future__ import annotations

import csv
import json
import os
import statistics

import pytest

from pytest_disagg.cli import main
from test_export import EXAMPLE, small_doc, write

ROUNDS = 3


def ab_doc(created: str = "2026-03-01T00:00:00Z", scale: float = 1.0) -> dict:
    """A/B results: each side run once per round, each round with its own TTFT level."""
    doc = small_doc(created, [10.0])
    template = doc["runs"][0]
    runs = []
    for k in range(ROUNDS):
        for side in "AB":
            ttft = [scale * (10.0 + 5 * k + (2 if side == "B" else 0) + i) for i in range(5)]
            run = small_doc(created, ttft, side=side)["runs"][0]
            run.update(ab_round=k, extra={"ab_round": k}, deployment=template["deployment"] + ("-B" if side == "B" else ""))
            runs.append(run)
    doc["runs"] = runs
    return doc


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_csv_has_a_row_per_a_b_round_numbered(tmp_path):
    out = tmp_path / "history.csv"
    assert main(["export", str(write(tmp_path / "ab.json", ab_doc())), "--format", "csv", "-o", str(out)]) == 0
    rows = [r for r in csv.DictReader(out.open()) if r["metric"] == "ttft_ms"]
    assert sorted((r["side"], r["round"]) for r in rows) == [(s, str(k)) for s in "AB" for k in range(ROUNDS)]
    assert {r["run_in_round"] for r in rows} == {""}
    b_round_2 = next(r for r in rows if r["side"] == "B" and r["round"] == "2")
    assert float(b_round_2["p50"]) == 10.0 + 10 + 2 + 2


def test_a_run_outside_a_b_has_an_empty_round(tmp_path):
    out = tmp_path / "history.csv"
    assert main(["export", str(write(tmp_path / "r.json", small_doc("2026-03-01T00:00:00Z", [1.0, 2.0]))),
                 "--format", "csv", "-o", str(out)]) == 0
    assert {r["round"] for r in csv.DictReader(out.open())} == {""}


def test_otava_gets_the_median_of_the_rounds_and_says_so(tmp_path, capsys):
    paths = [write(tmp_path / f"ab{i}.json", ab_doc(f"2026-03-0{i + 1}T00:00:00Z", 1.0 + i)) for i in range(2)]
    out = tmp_path / "otava"
    assert main(["export", *map(str, paths), "--format", "otava", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count(f"ran it {ROUNDS} times (A/B rounds)") == 4      # 2 files x 2 sides
    tests = json.loads((out / "otava.yaml").read_text())["tests"]
    b_name = next(n for n in tests if n.endswith(".B"))
    assert "rounds" in tests[b_name]["attributes"]
    rows = list(csv.DictReader((out / tests[b_name]["file"]).open()))
    assert [r["rounds"] for r in rows] == [str(ROUNDS)] * 2
    per_round_p50 = [10.0 + 5 * k + 2 + 2 for k in range(ROUNDS)]
    assert [float(r["ttft_ms_p50"]) for r in rows] == [statistics.median(per_round_p50) * s for s in (1.0, 2.0)]


def test_otava_without_rounds_has_no_rounds_attribute(tmp_path, capsys):
    path = write(tmp_path / "r.json", small_doc("2026-03-01T00:00:00Z", [1.0, 2.0]))
    assert main(["export", str(path), "--format", "otava", "-o", str(tmp_path / "o")]) == 0
    (info,) = json.loads((tmp_path / "o" / "otava.yaml").read_text())["tests"].values()
    assert "rounds" not in info["attributes"] and "A/B rounds" not in capsys.readouterr().err


@pytest.mark.parametrize("fmt, name", [("pytest-benchmark", "out.json"), ("csv", "out.csv"), ("otava", "otava")])
def test_exported_files_are_0644_under_the_usual_umask(tmp_path, umask_022, fmt, name):
    out = tmp_path / name
    assert main(["export", str(EXAMPLE), "--format", fmt, "-o", str(out)]) == 0
    files = list(out.iterdir()) if out.is_dir() else [out]
    assert files and {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o644)}


def test_a_stricter_umask_is_honoured(tmp_path):
    old = os.umask(0o077)
    try:
        assert main(["export", str(EXAMPLE), "--format", "pytest-benchmark", "-o", str(tmp_path / "o.json")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.json").stat().st_mode & 0o777 == 0o600
