"""``--disagg-benchmark-json`` in a child pytest: written at session end from the session's
results document (with or without ``--disagg-json``), nothing written without the option, a
directory given as the path is a usage error."""
from __future__ import annotations

import json

import numpy  # noqa: F401  imported here so the child runs reuse it (pytester restores sys.modules)

import pytest_disagg.export.pytest_plugin  # noqa: F401  (same reason)
import pytest_disagg.testing.synthetic  # noqa: F401

pytest_plugins = ["pytester"]

# A test that records runs the way disagg_bench does (a real SessionResults, synthetic requests).
RECORD = """
from pytest_disagg.testing import synthetic

def test_records(disagg_results):
    doc = synthetic.sparse()
    disagg_results.runs.extend(doc["runs"])
    disagg_results.deployments.update(doc["deployments"])
"""


def test_written_at_session_end_and_matches_the_export_of_the_results_file(pytester):
    pytester.makepyfile(test_rec=RECORD)
    result = pytester.runpytest("-p", "no:cacheprovider", "--disagg-benchmark-json=out/bench.json",
                                "--disagg-json=out/results.json")
    result.assert_outcomes(passed=1)
    bench = json.loads((pytester.path / "out/bench.json").read_text())
    results = json.loads((pytester.path / "out/results.json").read_text())
    assert "git_commit" in results            # recorded for later exports (None outside a checkout)
    result.stdout.fnmatch_lines([f"disagg: {len(bench['benchmarks'])} pytest-benchmark entries written to *"])
    from pytest_disagg.cli import main

    assert main(["export", str(pytester.path / "out/results.json"), "--format", "pytest-benchmark",
                 "-o", str(pytester.path / "again.json")]) == 0
    again = json.loads((pytester.path / "again.json").read_text())
    assert [b["fullname"] for b in again["benchmarks"]] == [b["fullname"] for b in bench["benchmarks"]]
    assert [b["stats"] for b in again["benchmarks"]] == [b["stats"] for b in bench["benchmarks"]]
    ttft = [b for b in bench["benchmarks"] if b["params"]["metric"] == "ttft_ms"]
    assert ttft and all(b["stats"]["rounds"] > 1 and b["extra_info"]["source"] == "samples" for b in ttft)


def test_ini_twin_and_no_disagg_json(pytester):
    pytester.makepyfile(test_rec=RECORD)
    pytester.makeini("[pytest]\ndisagg_benchmark_json = bench.json\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    assert not list(pytester.path.glob("results*.json"))


def test_nothing_written_without_the_option(pytester):
    pytester.makepyfile(test_rec=RECORD)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "pytest-benchmark entries" not in result.stdout.str()
    assert not [p for p in pytester.path.rglob("*.json") if ".disagg" not in p.parts]   # only the kept run


def test_a_session_without_runs_says_why_nothing_was_written(pytester):
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--disagg-benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["disagg: no pytest-benchmark JSON written to *bench.json: no benchmark run recorded"])
    assert not (pytester.path / "bench.json").exists()


def test_a_directory_is_a_usage_error(pytester):
    (pytester.path / "somedir").mkdir()
    result = pytester.runpytest("-p", "no:cacheprovider", "--disagg-benchmark-json=somedir")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--disagg-benchmark-json=somedir: is a directory; give a file name*"])


def test_option_and_ini_are_listed_in_help(pytester):
    out = pytester.runpytest("--help").stdout.str()
    assert "--disagg-benchmark-json=PATH" in out and "disagg_benchmark_json" in out
