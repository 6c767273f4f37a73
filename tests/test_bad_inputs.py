"""Bad input to the console script and the options: one line naming the file or option and what
is wrong, a non-zero exit, the input left byte for byte as it was (issue #29's cases)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_disagg.baseline import settings
from pytest_disagg.cli import main
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.options import OptionError, build_options
from test_cli_baselines import OLD, save, tree  # noqa: F401  (tree is a fixture)

pytest_plugins = ["pytester"]
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-report" / "results.json"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(capsys, *names: str) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def string_for_number(tmp_path) -> Path:
    """The example results with one run's TTFT median written as a word."""
    doc = json.loads(EXAMPLE.read_text())
    doc["runs"][1]["summary"]["ttft_ms"]["p50"] = "fast"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("argv, code", [
    (["report", "{}", "--out", "{out}"], 2),
    (["baselines", "history", "ttft_ms", "--results", "{}"], 2),
    (["export", "{}", "--format", "csv", "-o", "{out}/x.csv"], 2),
    (["compare", "{}", "{}"], 2),
])
def test_a_string_where_a_number_belongs_names_the_file_run_and_field(capsys, tmp_path, string_for_number, argv, code):
    before = digest(string_for_number)
    args = [a.format(string_for_number, out=tmp_path / "out") for a in argv]
    assert main(args) == code
    line = one_line_error(capsys, str(string_for_number), "runs[1]", "summary.ttft_ms.p50", "'fast'", "not a number")
    assert "could not convert" not in line
    assert digest(string_for_number) == before


@pytest.mark.parametrize("where", ["scalars", "samples", "energy"])
def test_strings_elsewhere_in_a_run_are_named_too(tmp_path, where):
    from pytest_disagg.results import load_results

    doc = json.loads(EXAMPLE.read_text())
    run = doc["runs"][0]
    field = {"scalars": ("scalars", "output_throughput"), "samples": ("samples", "ttft_ms"),
             "energy": ("energy", "joules_per_token")}[where]
    if where == "samples":
        run["samples"]["ttft_ms"][3] = "slow"
    else:
        run[field[0]] = {**(run.get(field[0]) or {}), field[1]: "slow"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    expected = f"{field[0]}.{field[1]}" + ("[3]" if where == "samples" else "")
    with pytest.raises(ValueError) as info:
        load_results(path)
    assert str(info.value).startswith(f"{path}: runs[0] (") and f": {expected} is 'slow', not a number" in str(info.value)


def test_baselines_history_on_a_directory_is_one_line(capsys, tmp_path):
    (tmp_path / "a.json").write_text("{}")
    assert main(["baselines", "history", "ttft_ms", "--results", str(tmp_path)]) == 2
    one_line_error(capsys, str(tmp_path), "is a directory")


def test_report_and_export_on_a_directory_are_one_line(capsys, tmp_path):
    assert main(["export", str(tmp_path), "--format", "csv", "-o", str(tmp_path / "x.csv")]) == 2
    one_line_error(capsys, str(tmp_path), "is a directory")


def test_show_of_a_corrupt_baseline_says_why_it_cannot_be_read(capsys, tree):  # noqa: F811
    store, old, _ = tree
    ids = ["t::tpot[nixl-cpu-pc0]", "t::odd id/with spaces"]
    save(store, OLD, ids[1], 1.0, "2025-01-01T00:00:02+00:00", seed=9)
    for benchmark in ids:
        path = store.path(old, benchmark)
        path.write_text('{"schema_version": 1, "benchmark": ')       # cut short
        before = digest(path)
        assert main(["baselines", "show", old, benchmark, "--dir", str(store.root)]) == 2
        line = one_line_error(capsys, str(path), "not valid JSON")
        assert "no benchmark matching" not in line
        assert digest(path) == before


def test_a_word_in_a_baseline_statistic_makes_the_file_unreadable_with_the_field(capsys, tree):  # noqa: F811
    store, old, _ = tree
    path = store.path(old, "t::tpot[nixl-cpu-pc0]")
    doc = json.loads(path.read_text())
    doc["metrics"]["tpot_ms"]["median"] = "fast"
    path.write_text(json.dumps(doc))
    before = digest(path)
    assert main(["baselines", "show", old, "t::tpot[nixl-cpu-pc0]", "--dir", str(store.root)]) == 2
    one_line_error(capsys, str(path), "metric 'tpot_ms': median is 'fast', not a finite number")
    assert digest(path) == before


def test_history_names_the_baseline_files_it_cannot_read(capsys, tree):  # noqa: F811
    store, old, _ = tree
    path = store.path(old, "t::tpot[nixl-cpu-pc0]")
    path.write_text("{")
    before = digest(path)
    assert main(["baselines", "history", "tpot_ms", "--dir", str(store.root)]) == 2
    out, err = capsys.readouterr()
    assert "t::tpot[colocated-pc0]" in out                       # the readable ones are still shown
    assert err.strip().splitlines() == [next(line for line in err.splitlines() if str(path) in line)]
    assert f"left out {path}: not valid JSON" in err and digest(path) == before


# --- options ---------------------------------------------------------------------------------

def test_disagg_json_naming_a_directory_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match=f"--disagg-json='{tmp_path}': is a directory; give a file name"):
        build_options({"json": str(tmp_path)}, MediumRegistry(), 0)
    assert build_options({"json": str(tmp_path / "r.json")}, MediumRegistry(), 0).json_path == tmp_path / "r.json"


def test_disagg_json_naming_a_directory_stops_pytest_at_start(pytester):
    (pytester.path / "somedir").mkdir()
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", "--disagg-json=somedir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--disagg-json='somedir': is a directory; give a file name*"])
    result.stdout.no_fnmatch_line("*test_x*PASSED*")


@pytest.mark.parametrize("value, message", [
    ("95", "--disagg-gate-confidence='95': a fraction must be below 1; give 0.95 or 95%"),
    ("99.9", "--disagg-gate-confidence='99.9': a fraction must be below 1; give 0.999 or 99.9%"),
    ("100%", "--disagg-gate-confidence='100%': must be at least 0 and below 100 %; give a fraction below 1"),
    ("high", "--disagg-gate-confidence='high': not a number; give a fraction below 1 (e.g. 0.05) or a percent"),
    ("0", "--disagg-gate-confidence='0': must be above 0"),
])
def test_gate_confidence_errors_say_what_was_given_and_what_is_allowed(value, message):
    with pytest.raises(settings.SettingsError) as info:
        settings.build(confidence=value)
    assert message in str(info.value)


def test_gate_confidence_spellings():
    assert settings.build(confidence="95%").confidence == pytest.approx(0.95)
    assert settings.build(confidence="0.95").confidence == pytest.approx(0.95)
    with pytest.raises(settings.SettingsError, match=r"--disagg-tolerance \(latency\)='5': a fraction must be below 1; "
                                                     r"give 0.05 or 5%"):
        settings.parse_tolerance("latency=5")
