"""Every session that recorded a run keeps it as ``.disagg/runs/<id>/results.json`` (a child
pytest over synthetic records, as the export plugin's tests), and run ids are looked up by
prefix, ``latest`` and ``previous``."""
from __future__ import annotations

import json
import os
import stat

import numpy  # noqa: F401  imported here so the child runs reuse it (pytester restores sys.modules)
import pytest

import pytest_disagg.testing.synthetic  # noqa: F401  (same reason)
from pytest_disagg import runs
from pytest_disagg.results import SessionResults
from test_export_plugin import RECORD     # a test that records runs the way disagg_bench does

pytest_plugins = ["pytester"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def kept(root) -> list:
    return sorted(root.glob(".disagg/runs/*/results.json"))


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_session_with_no_flags_keeps_its_run(pytester, umask_022):
    pytester.makepyfile(test_rec=RECORD)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (path,) = kept(pytester.path)
    doc = json.loads(path.read_text())
    assert [r["benchmark"] for r in doc["runs"]] == ["latency"] * 3 and doc["schema_version"] == 2
    assert path.parent.name == runs.run_id(doc)
    result.stdout.fnmatch_lines([f"disagg: run {path.parent.name} kept in {path} (pytest-disagg compare *)"])
    assert mode(path) == 0o644 and not [p for p in path.parent.iterdir() if p != path]


def test_the_kept_run_is_the_disagg_json_document_and_both_are_0644(pytester, umask_022):
    pytester.makepyfile(test_rec=RECORD)
    pytester.runpytest("-p", "no:cacheprovider", "--disagg-json=out/results.json").assert_outcomes(passed=1)
    (path,) = kept(pytester.path)
    written = pytester.path / "out" / "results.json"
    assert path.read_bytes() == written.read_bytes()
    assert mode(written) == mode(path) == 0o644


def test_save_no_keeps_nothing(pytester):
    pytester.makepyfile(test_rec=RECORD)
    pytester.runpytest("-p", "no:cacheprovider", "--disagg-save=no").assert_outcomes(passed=1)
    assert not (pytester.path / ".disagg").exists()
    pytester.makeini("[pytest]\ndisagg_save = no\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / ".disagg").exists()


def test_a_session_without_a_benchmark_keeps_nothing(pytester):
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / ".disagg").exists() and "kept in" not in result.stdout.str()


def test_save_dir_and_two_sessions_in_one_second_get_two_runs(pytester):
    pytester.makepyfile(test_rec=RECORD)
    for _ in range(2):
        pytester.runpytest("-p", "no:cacheprovider", "--disagg-save-dir=elsewhere").assert_outcomes(passed=1)
    names = runs.run_ids(pytester.path / "elsewhere")
    assert len(names) == 2 and not (pytester.path / ".disagg").exists()


def test_save_dir_naming_a_file_is_a_usage_error(pytester):
    (pytester.path / "afile").write_text("")
    result = pytester.runpytest("-p", "no:cacheprovider", "--disagg-save-dir=afile")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--disagg-save-dir='afile': is a file; give a directory*"])


def test_an_unwritable_runs_directory_costs_the_run_not_the_session(pytester):
    pytester.makepyfile(test_rec=RECORD)
    blocker = pytester.path / "blocker"
    blocker.write_text("")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--disagg-save-dir={blocker}/runs")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["disagg: run not kept (*)*--disagg-save=no*"])


def save_documents(root, created: list[str]) -> list[str]:
    results = SessionResults(fingerprint={"machine_hash": "3f2a9c1d7e6b"})
    ids = []
    for when in created:
        document = {**results.to_json(), "created": when}
        ids.append(runs.save(results, document, root).parent.name)
    return ids


def test_run_ids_sort_by_time_and_resolve_by_prefix_latest_previous(tmp_path):
    root = tmp_path / "runs"
    ids = save_documents(root, ["2026-12-07T21:30:00+00:00", "2026-12-07T22:30:00+01:00",
                                "2026-12-08T09:00:00+00:00"])
    assert ids == ["20261207T213000Z-3f2a9c1d", "20261207T213000Z-3f2a9c1d-2", "20261208T090000Z-3f2a9c1d"]
    assert runs.run_ids(root) == ids
    assert runs.resolve("latest", root) == root / ids[2] / "results.json"
    assert runs.resolve("previous", root) == root / ids[1] / "results.json"
    assert runs.resolve("20261208", root).parent.name == ids[2]
    assert runs.resolve(ids[0], root).parent.name == ids[0]          # an id that prefixes another
    assert runs.resolve(str(root / ids[1]), root) == root / ids[1] / "results.json"
    with pytest.raises(runs.RunsError, match="run '20261207' is ambiguous under .*: 20261207T213000Z-3f2a9c1d, "):
        runs.resolve("20261207", root)
    with pytest.raises(runs.RunsError, match="unknown run '2025' under .*; newest: 20261207T213000Z"):
        runs.resolve("2025", root)


def test_find_root_looks_in_the_directory_and_above(tmp_path):
    (tmp_path / ".disagg" / "runs").mkdir(parents=True)
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert runs.find_root(tmp_path / "a" / "b") == (tmp_path / ".disagg" / "runs").resolve()
