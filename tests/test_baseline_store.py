"""The baseline store: round trip, readable JSON, atomic writes, errors that name the file,
no overwrite without refresh, concurrent writers (as under pytest -n), candidates and promotion."""
from __future__ import annotations

import json
import multiprocessing
import os
import time

import numpy as np
import pytest

from pytest_disagg.baseline import document, jsonfmt, store as store_mod
from pytest_disagg.baseline.fingerprint import Fingerprint
from pytest_disagg.baseline.store import BaselineError, BaselineExists, BaselineStore

MACHINE = {"gpu": [], "gpu_count": 0, "driver": None, "cuda": None, "cpu": "Test CPU", "vllm": "0.32.0",
           "torch": "2.9.0", "nixl": None, "lmcache": None}


def make_doc(benchmark="test_latency::test_tpot[nixl-cpu-pc0]", scale=1.0, seed=0, machine=MACHINE, n=200):
    rng = np.random.default_rng(seed)
    fp = Fingerprint(machine=machine, subject={"model": "m1", "medium": "c1", "workload": "w1"})
    return document.build(benchmark=benchmark, fingerprint=fp,
                          samples={"ttft_ms": (rng.lognormal(3.0, 0.3, n) * scale).tolist(),
                                   "tpot_ms": rng.lognormal(1.5, 0.2, n).tolist()},
                          scalars={"output_throughput": 123.456789},
                          config={"medium": "nixl-cpu"}, workload={"requests": n}, commit="abc123")


def test_round_trip_and_readable_layout(tmp_path):
    store = BaselineStore(tmp_path / "baselines")
    doc = make_doc()
    path = store.save(doc)
    assert path == tmp_path / "baselines" / doc["fingerprint"]["machine_hash"] / "test_latency.test_tpot[nixl-cpu-pc0].json"
    assert store.load(doc["fingerprint"]["machine_hash"], doc["benchmark"]) == json.loads(path.read_text())
    loaded = store.load(doc["fingerprint"]["machine_hash"], doc["benchmark"])
    ttft = loaded["metrics"]["ttft_ms"]
    assert ttft["n"] == 200 and len(ttft["samples"]) == 200 and ttft["direction"] == "lower" and ttft["unit"] == "ms"
    assert ttft["p10"] <= ttft["p50"] <= ttft["p90"] <= ttft["p99"]
    assert ttft["median_ci"][0] <= ttft["median"] <= ttft["median_ci"][1]
    assert loaded["metrics"]["output_throughput"] == {"kind": "scalar", "direction": "higher", "unit": "tok/s",
                                                      "value": 123.46}
    assert loaded["schema_version"] == document.SCHEMA_VERSION and loaded["git_commit"] == "abc123"
    assert loaded["created"].endswith("+00:00")
    text = path.read_text()
    assert text.startswith('{\n  "benchmark"') and text.endswith("}\n")
    assert max(len(line) for line in text.splitlines()) <= jsonfmt.WIDTH
    assert len(text.splitlines()) < 200          # 400 samples packed, not one per line


def test_samples_are_rounded_to_five_significant_digits():
    assert document.round_significant([123.456789, 0.000123456789, 98765.4321]) == [123.46, 0.00012346, 98765.0]


def test_jsonfmt_is_deterministic_valid_json_and_refuses_nan():
    data = {"b": [1.5] * 60, "a": {"z": [], "y": {}, "x": [{"k": 1}, "s"]}, "c": None}
    text = jsonfmt.dumps(data)
    assert json.loads(text) == data and jsonfmt.dumps(json.loads(text)) == text
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    with pytest.raises(ValueError):
        jsonfmt.dumps({"x": float("nan")})


def test_write_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    store = BaselineStore(tmp_path)
    path = store.save(make_doc())
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(BaselineError, match=r"cannot be written \(disk full\)"):
        store.save(make_doc(scale=2.0), refresh=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]     # no temp file left behind


def _write_bad(tmp_path, text: str):
    store = BaselineStore(tmp_path)
    doc = make_doc()
    path = store.save(doc)
    path.write_text(text)
    return store, doc, path


@pytest.mark.parametrize("mangle, message", [
    (lambda good: good[: len(good) // 2], "not valid JSON .* truncated"),
    (lambda good: "", "empty file"),
    (lambda good: "{oops", "not valid JSON"),
    (lambda good: good.replace('"schema_version": 1', '"schema_version": 99'), "unknown schema_version 99"),
    (lambda good: good.replace('"schema_version": 1,', ''), "no schema_version"),
    (lambda good: good.replace('"n": 200', '"n": 150', 1), "n = 150 but 200 samples"),
    (lambda good: good.replace('"vllm": "0.32.0"', '"vllm": "0.33.0"'), "machine_hash .* does not match"),
    (lambda good: "[1, 2]", "expected a JSON object"),
])
def test_bad_files_are_errors_naming_the_file(tmp_path, mangle, message):
    store, doc, path = _write_bad(tmp_path, "")
    good = jsonfmt.dumps(doc)
    path.write_text(mangle(good))
    with pytest.raises(BaselineError, match=message) as info:
        store.load(doc["fingerprint"]["machine_hash"], doc["benchmark"])
    assert str(path) in str(info.value)


def test_existing_files_are_never_overwritten_without_refresh(tmp_path):
    store, doc, path = _write_bad(tmp_path, "{corrupt")
    with pytest.raises(BaselineExists, match="refresh"):
        store.save(make_doc(scale=3.0))
    assert path.read_text() == "{corrupt"
    store.save(make_doc(scale=3.0), refresh=True)
    assert store.load(doc["fingerprint"]["machine_hash"], doc["benchmark"])["metrics"]["ttft_ms"]["median"] > \
        doc["metrics"]["ttft_ms"]["median"] * 2.9


def test_a_document_that_could_not_be_read_back_is_never_written(tmp_path):
    doc = make_doc()
    doc["metrics"]["ttft_ms"]["samples"][3] = "fast"
    with pytest.raises(BaselineError, match="sample 3 is not a finite number"):
        BaselineStore(tmp_path).save(doc)
    assert not any(tmp_path.rglob("*.json"))


def test_build_rejects_nan_samples_naming_the_metric():
    fp = Fingerprint(machine=MACHINE)
    with pytest.raises(ValueError, match="'ttft_ms'.*NaN or infinite"):
        document.build(benchmark="b", fingerprint=fp, samples={"ttft_ms": [1.0, float("nan")]})


def test_file_names_are_portable_and_do_not_collide():
    assert store_mod.file_name("test_a::test_b[disk-pc1]") == "test_a.test_b[disk-pc1].json"
    one, two = store_mod.file_name("t::x[a/b]"), store_mod.file_name("t::x[a b]")
    assert "/" not in one and " " not in two and one != two
    assert not store_mod.file_name("..hidden").startswith(".")


def test_a_collision_inside_a_file_is_reported(tmp_path):
    store = BaselineStore(tmp_path)
    doc = make_doc(benchmark="t::one")
    path = store.save(doc)
    os.replace(path, store.path(doc["fingerprint"]["machine_hash"], "t::two"))
    with pytest.raises(BaselineError, match="holds benchmark 't::one', not 't::two'"):
        store.load(doc["fingerprint"]["machine_hash"], "t::two")


def _create_if_absent(args):
    root, seed = args
    try:
        BaselineStore(root).save(make_doc(seed=seed))
        return seed
    except BaselineExists:
        return None


def _refresh_many(args):
    root, seed = args
    for i in range(5):
        BaselineStore(root).save_candidate(make_doc(seed=seed * 100 + i))
    return seed


def test_concurrent_writers_one_creates_the_rest_are_refused(tmp_path):
    root = str(tmp_path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        winners = [w for w in pool.map(_create_if_absent, [(root, s) for s in range(8)]) if w is not None]
    assert len(winners) == 1
    doc = make_doc(seed=winners[0])
    stored = BaselineStore(root).load(doc["fingerprint"]["machine_hash"], doc["benchmark"])
    assert stored["metrics"]["ttft_ms"]["samples"] == doc["metrics"]["ttft_ms"]["samples"]


def test_concurrent_candidate_writers_leave_one_whole_file(tmp_path):
    root = str(tmp_path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_refresh_many, [(root, s) for s in range(6)])
    store = BaselineStore(root)
    entries = list(store.entries(candidates=True))
    assert len(entries) == 1 and entries[0].error is None
    written = {json.dumps(make_doc(seed=s * 100 + i)["metrics"], sort_keys=True) for s in range(6) for i in range(5)}
    assert json.dumps(entries[0].doc["metrics"], sort_keys=True) in written
    assert [p.name for p in entries[0].path.parent.iterdir()] == [entries[0].path.name]


def test_candidates_are_kept_apart_and_promoted_by_pattern(tmp_path):
    store = BaselineStore(tmp_path)
    a, b = make_doc(benchmark="t::a"), make_doc(benchmark="t::b")
    store.save_candidate(a)
    store.save_candidate(b)
    machine = a["fingerprint"]["machine_hash"]
    assert store.load(machine, "t::a") is None
    assert store.promote(["t::a"], dry_run=True) and store.load(machine, "t::a") is None
    moved = store.promote(["t::a"])
    assert [target.name for _, target in moved] == ["t.a.json"]
    assert store.load(machine, "t::a") is not None and store.load(machine, "t::b") is None
    assert [e.benchmark for e in store.entries(candidates=True)] == ["t::b"]
    store.candidate_path(machine, "t::c").write_text("{")
    with pytest.raises(BaselineError, match="t.c.json"):
        store.promote()
    assert store.load(machine, "t::b") is None        # nothing promoted when one candidate is broken


def test_bad_fingerprint_hash_cannot_escape_the_directory(tmp_path):
    with pytest.raises(ValueError, match="not a fingerprint hash"):
        BaselineStore(tmp_path).path("../../etc", "t::a")


def test_the_lock_lives_in_the_store_and_is_not_listed(tmp_path):
    store = BaselineStore(tmp_path / "b")
    store.save(make_doc())
    assert (tmp_path / "b" / store_mod.LOCK_NAME).exists()
    assert [e.error for e in store.entries()] == [None]


def test_an_unwritable_baselines_directory_is_one_clear_error(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")                        # a directory that cannot be made (works as root too)
    with pytest.raises(BaselineError, match=r"a-file.*cannot be written .*--disagg-baselines-dir"):
        BaselineStore(blocked / "baselines").save(make_doc())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_baselines_directory_is_one_clear_error(tmp_path):
    root = tmp_path / "baselines"
    store = BaselineStore(root)
    store.save(make_doc())
    for p in [root, *root.iterdir()]:
        p.chmod(0o555)
    try:
        with pytest.raises(BaselineError, match="cannot be written .*Permission denied"):
            store.save(make_doc(benchmark="t::other"))
    finally:
        for p in [root, *root.iterdir()]:
            p.chmod(0o755)


def _record_or_promote(args):
    root, worker, n = args
    store = BaselineStore(root)
    if worker == 0:                       # promotes whatever candidates it finds, as fast as it can
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(root, "done")) and time.monotonic() < deadline:
            store.promote()
        store.promote()
        return worker
    for i in range(n):                   # records the same benchmark again and again, and another one
        store.save_candidate(make_doc(benchmark="t::shared", seed=i, n=20))
        store.save(make_doc(benchmark=f"t::direct-{i}", seed=i, n=20), refresh=True)
    open(os.path.join(root, "done"), "w").close()
    return worker


def test_recording_and_refreshing_at_once_lose_no_write(tmp_path):
    """Two processes (as two xdist workers): one records a benchmark's candidate over and over and
    refreshes baselines, the other promotes every candidate it finds at the same time. The last
    candidate written becomes the baseline (none is deleted unpromoted), and every file reads back."""
    root, n = str(tmp_path), 40
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_record_or_promote, [(root, w, n) for w in (0, 1)])
    store = BaselineStore(root)
    baselines, candidates = list(store.entries()), list(store.entries(candidates=True))
    assert [e.error for e in baselines + candidates if e.error] == []
    assert candidates == []
    assert {e.benchmark for e in baselines} == {"t::shared"} | {f"t::direct-{i}" for i in range(n)}
    last = make_doc(benchmark="t::shared", seed=n - 1, n=20)
    shared = store.load(last["fingerprint"]["machine_hash"], "t::shared")
    assert shared["metrics"]["ttft_ms"]["samples"] == last["metrics"]["ttft_ms"]["samples"], "the last write was lost"
