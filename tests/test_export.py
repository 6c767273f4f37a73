"""``pytest-disagg export``: pytest-benchmark JSON that pytest-benchmark's own loader, classes and
``compare`` read; the history as CSV and as Apache Otava's input, where Otava finds a known step."""
from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_disagg.cli import main
from pytest_disagg.export import ExportError, benchjson, benchstats, from_document, pytest_benchmark_document
from pytest_disagg.metrics import summarize
from pytest_disagg.testing import synthetic
from pytest_disagg.results import SessionResults

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example-report" / "results.json"
# The console script pip installs with pytest-benchmark, else the same entry point through -m.
_SCRIPT = Path(sys.executable).with_name("pytest-benchmark")
PYTEST_BENCHMARK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "pytest_benchmark"]


def write(path: Path, doc: dict) -> Path:
    SessionResults().write(path, doc)
    return path


def small_doc(created: str, ttft_ms, *, throughput: float = 50.0, valid: bool | None = None, samples: bool = True,
              side: str | None = None, load: str = "rate=4/s") -> dict:
    """A results document of the newer shape with one run (hand-made: exact numbers to check)."""
    ttft_ms = [float(v) for v in ttft_ms]
    run = {"benchmark": "latency", "test": "tests/benchmarks/test_latency.py::test_latency[nixl-gpu-pc0]",
           "deployment": "nixl-gpu-pc0", "setup": "nixl-gpu", "medium": "nixl-gpu", "load": load,
           "summary": {"ttft_ms": summarize(ttft_ms, resamples=20)}, "scalars": {"output_throughput": throughput},
           "n_ok": len(ttft_ms), "n_failed": 0, "wall_s": 10.0, "warmup": 2,
           "fingerprint": {"machine": {"gpu": ["H200"], "vllm": "0.32.0"}, "machine_hash": "abc123def456"}}
    if samples:
        run["samples"] = {"ttft_ms": ttft_ms}
    if valid is not None:
        run.update(valid=valid, invalid_reasons=[] if valid else ["load generator saturated"])
    if side:
        run["side"] = side
    return {"schema_version": 1, "created": created, "fingerprint": {}, "options": {}, "deployments": {},
            "runs": [run], "derived": {}}


# --- the pytest-benchmark form ---------------------------------------------------------------

@pytest.fixture(scope="module")
def full_export():
    doc = synthetic.full()
    return doc, pytest_benchmark_document(from_document(doc), with_data=True)[0]


def test_stats_are_what_pytest_benchmark_computes_from_the_same_data(full_export):
    from pytest_benchmark.stats import Stats

    _, out = full_export
    assert len(out["benchmarks"]) > 100
    for bench in out["benchmarks"]:
        ref = Stats()
        for value in bench["stats"]["data"]:
            ref.update(value)
        expected = ref.as_dict()
        for key, value in expected.items():
            if isinstance(value, str):
                assert bench["stats"][key] == value, (bench["name"], key)
            else:
                assert bench["stats"][key] == pytest.approx(value, rel=1e-9, abs=1e-15), (bench["name"], key)


def test_pytest_benchmark_file_storage_loads_every_entry(tmp_path, full_export):
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage

    _, out = full_export
    path = tmp_path / "0001_export.json"
    path.write_text(json.dumps(out, allow_nan=False))
    warnings = []
    logger = Logger(Logger.QUIET)
    logger.warning = lambda text, **kw: warnings.append(text)
    loaded = list(FileStorage(tmp_path, logger=logger).load_benchmarks(str(path)))
    assert not warnings
    assert [b["fullname"] for b in loaded] == [b["fullname"] for b in out["benchmarks"]]
    assert len({b["fullname"] for b in loaded}) == len(loaded)
    for bench in loaded:   # what compare's table reads from each entry, flattened by the loader
        for key in ("min", "max", "mean", "stddev", "median", "iqr", "ops", "rounds", "iterations", "outliers"):
            assert key in bench, (bench["name"], key)


def test_names_units_and_reciprocals():
    ttft = [10.0, 12.0, 11.0, 30.0, 9.0]
    doc, skipped = pytest_benchmark_document(from_document(small_doc("2026-01-01T00:00:00+00:00", ttft)),
                                             with_data=True)
    by_name = {b["name"]: b for b in doc["benchmarks"]}
    assert skipped == []
    ttft_entry = by_name["test_latency[nixl-gpu-pc0]::rate=4/s::ttft_ms"]
    assert ttft_entry["fullname"] == "tests/benchmarks/test_latency.py::test_latency[nixl-gpu-pc0]::rate=4/s::ttft_ms"
    assert ttft_entry["stats"]["data"] == pytest.approx([v / 1000 for v in ttft])
    assert ttft_entry["stats"]["median"] == pytest.approx(0.011)
    assert ttft_entry["stats"]["rounds"] == 5
    assert ttft_entry["extra_info"]["unit"] == "s" and ttft_entry["extra_info"]["metric_unit"] == "ms"
    assert ttft_entry["group"] == "latency::ttft_ms"
    tput = by_name["test_latency[nixl-gpu-pc0]::rate=4/s::1/output_throughput"]
    assert tput["stats"]["mean"] == pytest.approx(1 / 50.0) and tput["stats"]["ops"] == pytest.approx(50.0)
    assert tput["extra_info"]["unit"] == "s/tok" and tput["extra_info"]["direction"] == "higher"
    assert tput["extra_info"]["transform"] == "reciprocal"
    assert doc["machine_info"]["gpu"] == ["H200"] and doc["machine_info"]["fingerprint"]["machine_hash"]
    assert ttft_entry["extra_info"]["warmup"] == 2


def test_a_zero_throughput_and_an_invalid_run_are_left_out_with_the_reason():
    doc, skipped = pytest_benchmark_document(from_document(small_doc("2026-01-01T00:00:00Z", [5, 6], throughput=0.0)))
    assert [b["name"].rsplit("::", 1)[-1] for b in doc["benchmarks"]] == ["ttft_ms"]
    assert any("output_throughput" in s and "no reciprocal" in s for s in skipped)
    invalid = small_doc("2026-01-01T00:00:00Z", [5, 6], valid=False)
    with pytest.raises(ExportError, match="load generator saturated"):
        pytest_benchmark_document(from_document(invalid))
    kept, _ = pytest_benchmark_document(from_document(invalid, include_invalid=True))
    assert kept["benchmarks"][0]["extra_info"]["valid"] is False


def test_ab_sides_are_entries_of_their_own():
    a, b = (small_doc("2026-01-01T00:00:00Z", [5, 6], side=s)["runs"][0] for s in "AB")
    doc = small_doc("2026-01-01T00:00:00Z", [5, 6])
    doc["runs"] = [a, b]
    names = [x["name"] for x in pytest_benchmark_document(from_document(doc))[0]["benchmarks"]]
    assert "test_latency[nixl-gpu-pc0]::rate=4/s::A::ttft_ms" in names
    assert "test_latency[nixl-gpu-pc0]::rate=4/s::B::ttft_ms" in names
    doc["runs"] = [a, dict(a)]    # the same key twice: both kept, the second numbered
    names = [x["name"] for x in pytest_benchmark_document(from_document(doc))[0]["benchmarks"]]
    assert "test_latency[nixl-gpu-pc0]::rate=4/s::A::ttft_ms#2" in names


def test_summary_only_runs_give_exact_moments_and_flagged_estimates():
    rng = np.random.default_rng(3)
    ttft = rng.lognormal(3, 0.3, 101).tolist()
    old = small_doc("2026-01-01T00:00:00Z", ttft, samples=False)
    entry = {b["name"]: b for b in pytest_benchmark_document(from_document(old))[0]["benchmarks"]}[
        "test_latency[nixl-gpu-pc0]::rate=4/s::ttft_ms"]
    exact = benchstats.from_samples([v / 1000 for v in ttft])
    for key in ("min", "max", "mean", "median", "stddev", "rounds", "total", "ops"):
        assert entry["stats"][key] == pytest.approx(exact[key], rel=1e-9), key
    assert entry["extra_info"]["source"] == "summary"
    assert set(entry["extra_info"]["estimated"]) >= {"q1", "q3", "iqr"}


# --- the command and pytest-benchmark compare ------------------------------------------------

def test_compare_lists_every_figure_of_two_exported_runs(tmp_path):
    first, second = synthetic.history(2)
    outs = []
    for i, doc in enumerate((first, second)):
        results = write(tmp_path / f"results{i}.json", doc)
        out = tmp_path / f"run{i}.json"
        assert main(["export", str(results), "--format", "pytest-benchmark", "-o", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    proc = subprocess.run([*PYTEST_BENCHMARK, "compare", "--time-unit=ms", "--columns=median,rounds",
                           str(tmp_path / "run0.json"), str(tmp_path / "run1.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for source, doc in zip(("run0", "run1"), outs):    # compare names each row's file: "<name> (<file>)"
        for bench in doc["benchmarks"]:
            row = re.compile(re.escape(bench["name"]) + rf" \(\S*{source}\) +{bench['stats']['median'] * 1000:,.4f} ")
            assert any(row.match(line) for line in lines), (bench["name"], [x for x in lines if bench["name"] in x])


def test_example_report_exports_and_compare_lists_it(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["export", str(EXAMPLE), "--format", "pytest-benchmark", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    proc = subprocess.run([*PYTEST_BENCHMARK, "compare", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split(" ", 1)[0] for line in proc.stdout.splitlines()}
    assert doc["benchmarks"] and {b["name"] for b in doc["benchmarks"]} <= listed
    if any(b["extra_info"].get("estimated") for b in doc["benchmarks"]):     # an older file: said so
        assert "entries come from summaries" in capsys.readouterr().err


def test_cli_errors_name_the_file_and_option(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.json"), "--format", "csv", "-o", str(tmp_path / "o.csv")]) == 2
    assert "nope.json: no such results file" in capsys.readouterr().err
    a = write(tmp_path / "a.json", small_doc("2026-01-01T00:00:00Z", [1, 2]))
    assert main(["export", str(a), str(a), "--format", "pytest-benchmark", "-o", str(tmp_path / "o.json")]) == 2
    assert "--format pytest-benchmark takes one results file, got 2" in capsys.readouterr().err
    bad = write(tmp_path / "bad.json", {**small_doc("2026-01-01T00:00:00Z", [1]), "created": "yesterday"})
    assert main(["export", str(bad), "--format", "csv", "-o", str(tmp_path / "o.csv")]) == 2
    assert "'created' is 'yesterday'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(a), "--format", "excel", "-o", "x"])


# --- history: CSV and Otava ------------------------------------------------------------------

STEP_AT = 10


def stepped_history(tmp_path: Path, n: int = 20) -> list[Path]:
    """``n`` daily results files; TTFT's median steps from ~100 ms to ~150 ms at file STEP_AT."""
    rng = np.random.default_rng(11)
    paths = []
    for day in range(n):
        centre = 100.0 if day < STEP_AT else 150.0
        ttft = rng.normal(centre, 4.0, 60)
        doc = small_doc(f"2026-03-{day + 1:02d}T04:00:00+00:00", ttft, throughput=float(rng.normal(50, 0.5)))
        doc["git_commit"] = f"{day:040x}"
        paths.append(write(tmp_path / f"results-{day:02d}.json", doc))
    return paths


def test_csv_history_has_one_row_per_file_series_and_metric(tmp_path):
    paths = stepped_history(tmp_path, n=4)
    out = tmp_path / "history.csv"
    assert main(["export", *map(str, paths[::-1]), "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 * 2
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    ttft = [r for r in rows if r["metric"] == "ttft_ms"]
    first = json.loads(paths[0].read_text())["runs"][0]["samples"]["ttft_ms"]
    assert float(ttft[0]["value"]) == pytest.approx(float(np.median(first)))
    assert ttft[0]["commit"] == f"{0:040x}" and ttft[0]["direction"] == "lower"


def test_otava_reads_the_history_and_finds_the_step(tmp_path):
    yaml = pytest.importorskip("yaml")
    from otava.analysis import TTestSignificanceTester  # noqa: F401  (the package is there, as in CI)
    from otava.importer import CsvImporter
    from otava.test_config import create_test_config

    paths = stepped_history(tmp_path)
    out = tmp_path / "otava"
    assert main(["export", *map(str, paths), "--format", "otava", "-o", str(out)]) == 0
    config = yaml.safe_load((out / "otava.yaml").read_text())
    (name, test_info), = config["tests"].items()
    assert test_info["metrics"]["ttft_ms_p50"]["direction"] == -1
    assert test_info["metrics"]["output_throughput"]["direction"] == 1
    test_info = {**test_info, "file": str(out / test_info["file"])}
    series = CsvImporter().fetch_data(create_test_config(name, test_info))
    assert len(series.time) == len(paths)
    assert series.attributes["commit"][0] == f"{0:040x}"
    analysis = series.analyze()
    steps = analysis.change_points["ttft_ms_p50"]
    assert [cp.index for cp in steps] == [STEP_AT]
    assert steps[0].forward_change_percent() == pytest.approx(50.0, abs=10.0)
    assert analysis.change_points.get("output_throughput", []) == []


def test_otava_cli_analyzes_the_exported_directory(tmp_path):
    paths = stepped_history(tmp_path)
    out = tmp_path / "otava"
    assert main(["export", *map(str, paths), "--format", "otava", "-o", str(out)]) == 0
    (name,) = json.loads((out / "otava.yaml").read_text())["tests"]
    exe = Path(sys.executable).with_name("otava")
    if not exe.exists():
        pytest.skip("the otava command is not installed beside this Python")
    proc = subprocess.run([str(exe), "analyze", "--config-file", "otava.yaml", name], capture_output=True, text=True,
                          cwd=out, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert name == "test_latency.nixl-gpu-pc0.rate=4_s"
    table = proc.stdout.splitlines()
    assert "ttft_ms_p50" in table[0]
    change = [line for line in table if re.fullmatch(r"\s*\+\d+\.\d%\s+\+\d+\.\d%\s*", line)]
    assert len(change) == 1     # one change point row, printed between the 10th and the 11th file
    assert table.index(change[0]) > next(i for i, line in enumerate(table) if "results-09.json" in line)
    assert table.index(change[0]) < next(i for i, line in enumerate(table) if "results-10.json" in line)


def test_otava_leaves_out_a_metric_missing_from_some_files(tmp_path, capsys):
    paths = stepped_history(tmp_path, n=3)
    doc = json.loads(paths[1].read_text())
    doc["runs"][0]["scalars"] = {}
    write(paths[1], doc)
    out = tmp_path / "otava"
    assert main(["export", *map(str, paths), "--format", "otava", "-o", str(out)]) == 0
    assert "output_throughput missing from some results files" in capsys.readouterr().err
    (test_info,) = json.loads((out / "otava.yaml").read_text())["tests"].values()
    assert "output_throughput" not in test_info["metrics"] and "ttft_ms_p50" in test_info["metrics"]
    header = (out / test_info["file"]).read_text().splitlines()[0].split(",")
    assert not any(math.isnan(float(v)) for line in (out / test_info["file"]).read_text().splitlines()[1:]
                   for v in line.split(",")[-len(test_info["metrics"]):])
    assert header[0] == "time"


@pytest.mark.parametrize("unit, inverse", [("tok/s", "s/tok"), ("req/s", "s/req"), ("1/s", "s"), ("1/J", "J"),
                                           ("J", "1/J"), ("1", "1")])
def test_reciprocal_units(unit, inverse):
    assert benchjson.reciprocal_unit(unit) == inverse


def test_transform_covers_every_metric_of_the_table():
    from pytest_disagg.metrics import METRICS

    for metric in METRICS.values():
        shown, scale, unit, how = benchjson.transform(metric)
        if metric.direction == "higher":
            assert shown == f"1/{metric.name}" and how == "reciprocal"
        else:
            assert shown == metric.name and (unit == "s") == (metric.unit == "ms")


def test_ops_is_higher_is_better_for_every_figure_as_github_action_benchmark_assumes():
    """github-action-benchmark's ``tool: 'pytest'`` charts ``stats.ops`` per ``fullname`` and alerts
    when it falls: a slower, less productive run must lower every entry's ops."""
    doc = synthetic.sparse()
    worse = json.loads(json.dumps(doc))
    for run in worse["runs"]:
        run["samples"] = {k: [v * 1.3 + 0.1 for v in vals] for k, vals in run["samples"].items()}
        run["scalars"] = {k: v / 1.3 for k, v in run["scalars"].items()}
    before, after = (pytest_benchmark_document(from_document(d))[0]["benchmarks"] for d in (doc, worse))
    assert [b["fullname"] for b in before] == [b["fullname"] for b in after]
    assert len({b["fullname"] for b in before}) == len(before)
    for b, a in zip(before, after):
        assert math.isfinite(b["stats"]["ops"]) and b["stats"]["ops"] > 0
        assert a["stats"]["ops"] < b["stats"]["ops"], b["fullname"]
