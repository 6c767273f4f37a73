"""``pytest-disagg compare A B`` on runs kept by child sessions: the same run is not a
regression (exit 0), per-request samples 20 % slower are (exit 1), and each bad input is one line
naming the file or id and what is wrong (exit 2), the input left as it was."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy  # noqa: F401  imported here so the child runs reuse it (pytester restores sys.modules)
import pytest

import pytest_disagg.testing.synthetic  # noqa: F401  (same reason)
from pytest_disagg import runs, verdicts
from pytest_disagg.cli import main
from pytest_disagg.results import SessionResults
from test_runs import RECORD, kept

pytest_plugins = ["pytester"]


@pytest.fixture
def kept_run(pytester, capsys):
    """A child session's kept run (pytester's directory is the cwd, so ids are found from there)."""
    pytester.makepyfile(test_rec=RECORD)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    capsys.readouterr()
    (path,) = kept(pytester.path)
    return path


def slower(path, factor: float, out):
    """The run's document with every latency sample multiplied by ``factor`` (throughputs kept)."""
    doc = json.loads(path.read_text())
    for run in doc["runs"]:
        run["samples"] = {name: [v * factor for v in values] for name, values in run["samples"].items()}
    out.write_text(json.dumps(doc))
    return out


def compare(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_same_run_twice_is_not_a_regression(capsys, kept_run):
    code, out, err = compare(capsys, "latest", kept_run.parent.name[:10])
    assert code == verdicts.EXIT_OK and not err
    assert "regressed" not in out and "(same machine fields)" in out
    tpot = [line for line in out.splitlines() if " tpot_ms " in line]
    assert len(tpot) == 3 and all("1.000" in line and line.rstrip().endswith("same") for line in tpot)


def test_samples_20_percent_slower_are_regressed_and_exit_1(capsys, kept_run, tmp_path):
    b = slower(kept_run, 1.2, tmp_path / "slower.json")
    code, out, err = compare(capsys, kept_run.parent, b)
    assert code == verdicts.EXIT_FAILED
    tpot = [line for line in out.splitlines() if " tpot_ms " in line]
    assert len(tpot) == 3 and all("regressed" in line and "1.200" in line for line in tpot), out
    assert "row(s) say regressed (--fail-on regressed" in err and len(err.strip().splitlines()) == 1
    throughput = next(line for line in out.splitlines() if " output_throughput " in line)
    assert throughput.rstrip().endswith("same") and "no-ci" in throughput
    assert compare(capsys, kept_run, b, "--fail-on", "none")[0] == verdicts.EXIT_OK
    code, out, _ = compare(capsys, b, kept_run)                     # the other way round: faster
    counts = out.strip().splitlines()[-1]
    assert code == verdicts.EXIT_OK and counts.startswith("30 row(s): ") and "improved" in counts
    assert "regressed" not in counts


def test_set_ups_on_one_side_only_are_named(capsys, kept_run, tmp_path):
    doc = json.loads(kept_run.read_text())
    doc["runs"] = doc["runs"][:2]
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps(doc))
    code, out, _ = compare(capsys, kept_run, fewer)
    assert code == verdicts.EXIT_OK
    assert out.split("only in A (1 set-ups):\n")[1].startswith("  colocated-pc0 latency[rate=2]  (test_latency[")
    code, out, _ = compare(capsys, kept_run, fewer, "*rate=0.5*")             # a pattern narrows both sides
    rows = [line for line in out.splitlines() if " latency[" in line]
    assert code == 0 and rows and all("latency[rate=0.5]" in line for line in rows) and "only in" not in out


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case, message", [
    ("missing", "{path}: no such results file or run directory"),
    ("corrupt", "{path}: not valid JSON"),
    ("not-results", "{path}: not a pytest-disagg results file"),
    ("empty-dir", "{path}: a directory without results.json"),
    ("unknown-id", "unknown run '1999' under"),
    ("ambiguous", "run '2' is ambiguous under"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, kept_run, tmp_path, case, message):
    path = {"missing": tmp_path / "gone.json", "corrupt": tmp_path / "cut.json",
            "not-results": tmp_path / "other.json", "empty-dir": tmp_path / "empty"}.get(case)
    if case == "corrupt":
        path.write_text(kept_run.read_text()[:500])
    elif case == "not-results":
        path.write_text('{"benchmarks": []}')
    elif case == "empty-dir":
        path.mkdir()
    elif case == "ambiguous":
        runs.save(SessionResults(), {**SessionResults().to_json(), "created": "2027-01-01T00:00:00+00:00"},
                  kept_run.parent.parent)
    ref = str(path) if path is not None else {"unknown-id": "1999", "ambiguous": "2"}[case]
    before = {p: digest(p) for p in [kept_run, *tmp_path.rglob("*")] if p.is_file()}
    code, out, err = compare(capsys, kept_run, ref)
    assert code == verdicts.EXIT_BAD_INPUT and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message.format(path=path) in lines[0] and "Traceback" not in err, err
    assert {p: digest(p) for p in [kept_run, *tmp_path.rglob("*")] if p.is_file()} == before


def test_a_run_id_without_a_runs_directory_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = compare(capsys, "latest", "previous")
    assert code == 2 and err.strip() == ("pytest-disagg compare: latest: no such file, and no .disagg/runs here "
                                         "or above to look a run id up in")


def test_a_run_marked_invalid_on_either_side_is_one_invalid_row(capsys, kept_run, tmp_path):
    doc = json.loads(kept_run.read_text())
    doc["runs"][0].update(valid=False, invalid_reasons=["token-bursts"])
    marked = tmp_path / "marked.json"
    marked.write_text(json.dumps(doc))
    code, out, _ = compare(capsys, kept_run, marked)
    rows = [line for line in out.splitlines() if " latency[rate=0.5] " in line]
    assert code == verdicts.EXIT_OK                 # invalid is the validity rules' call, not a regression
    assert len(rows) == 1 and rows[0].rstrip().endswith("invalid: B: token-bursts")
    assert compare(capsys, marked, kept_run, "--fail-on", "invalid,regressed")[0] == verdicts.EXIT_FAILED


DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("args", [
    ("results.json", "runs/20261207T215436Z-6611cf29", "colocated-pc0 kv-reuse*"),
    ("--runs-dir", "runs", "20261207T2147", "latest"),
])
def test_the_documented_examples_are_what_compare_prints(capsys, monkeypatch, args):
    """docs/gate-and-history.md pastes compare's output on the committed example results."""
    monkeypatch.chdir(DOCS / "example-report")
    code, out, _ = compare(capsys, *args)
    assert code == verdicts.EXIT_OK and out.strip() in (DOCS / "gate-and-history.md").read_text()
