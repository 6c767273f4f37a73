"""One run against its baseline: candidates, mismatches, comparisons and refreshes, per mode."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pytest_disagg import metrics as metric_info
from pytest_disagg.baseline import checker
from pytest_disagg.baseline.fingerprint import collect
from pytest_disagg.baseline.settings import Settings
from pytest_disagg.baseline.store import BaselineError, BaselineStore

MACHINE = {"gpu": [], "gpu_count": 0, "cpu": "Test CPU", "vllm": "0.32.0"}
BENCH = "test_latency::test_run[colocated-pc0]"


def run(store, mode="check", *, slow=1.0, seed=0, workload=None, refresh=False):
    rng = np.random.default_rng(seed)
    workload = workload or {"requests": 200, "rate": 4.0}
    fp = collect(medium={"medium": "colocated"}, workload=workload, machine=MACHINE)
    return checker.run_check(store, Settings(mode=mode, refresh=refresh), benchmark=BENCH, fingerprint=fp,
                             samples={"ttft_ms": (rng.lognormal(3.0, 0.1, 200) * slow).tolist()},
                             scalars={"output_throughput": 50.0 / slow}, config={"medium": "colocated"},
                             workload=workload, commit=None)


@pytest.fixture
def store(tmp_path):
    return BaselineStore(tmp_path / "baselines")


def test_missing_baseline_records_a_candidate_and_only_strict_fails(store):
    first = run(store)
    assert first.status == checker.CANDIDATE and not first.failed
    assert first.candidate_path.exists() and ".candidates" in str(first.candidate_path)
    assert not first.baseline_path.exists()
    assert "promote it with `pytest-disagg baselines refresh`" in first.message
    assert first.verdict_dicts() == [{"metric": "*", "verdict": "not compared", "status": "candidate",
                                      "reason": first.message}]
    assert run(store, "strict").failed
    assert not run(store, "warn").failed


def test_same_distribution_passes_and_a_slowed_run_fails_with_the_table(store):
    run(store, refresh=True)
    same = run(store, seed=1)
    assert same.status == checker.COMPARED and not same.failed and not same.regressions
    slowed = run(store, seed=2, slow=1.4)
    assert slowed.failed and {v.metric for v in slowed.regressions} == {"ttft_ms", "output_throughput"}
    report = slowed.report()
    assert "regressed" in report and "ttft_ms" in report and "no-ci" in report
    assert not run(store, "warn", seed=2, slow=1.4).failed          # warn reports, never fails


def test_cpu_hosts_get_the_wider_measured_tolerance(store):
    run(store, refresh=True)
    result = run(store, seed=6, slow=1.1)         # +10 %: beyond 5 %, within the CPU-host 15 %
    ttft = next(v for v in result.verdicts if v.metric == "ttft_ms")
    assert ttft.tolerance == metric_info.CPU_HOST_TOLERANCES["latency"] and not result.failed
    assert metric_info.default_tolerances({"gpu_count": 2}) == metric_info.DEFAULT_TOLERANCES
    assert metric_info.default_tolerances({"gpu_count": 0}) == metric_info.CPU_HOST_TOLERANCES
    gpu = collect(medium={"medium": "colocated"}, workload={"requests": 200, "rate": 4.0},
                  machine={**MACHINE, "gpu": ["H100"], "gpu_count": 1})
    rng = np.random.default_rng(7)
    settings = Settings(tolerances={})
    base = dict(benchmark=BENCH, fingerprint=gpu, config={"medium": "colocated"},
                workload={"requests": 200, "rate": 4.0}, scalars={"output_throughput": 50.0})
    checker.run_check(store, Settings(refresh=True), samples={"ttft_ms": rng.lognormal(3.0, 0.02, 200).tolist()}, **base)
    on_gpu = checker.run_check(store, settings, samples={"ttft_ms": (rng.lognormal(3.0, 0.02, 200) * 1.25).tolist()},
                               **base)
    assert on_gpu.failed and {v.metric for v in on_gpu.regressions} == {"ttft_ms"}


def test_an_improvement_is_reported_not_failed(store):
    run(store, refresh=True)
    faster = run(store, seed=3, slow=0.6)
    assert not faster.failed and {v.metric for v in faster.improvements} == {"ttft_ms", "output_throughput"}
    assert "refresh the baseline" in faster.message


def test_another_workload_is_a_mismatch_not_a_comparison(store):
    first = run(store, refresh=True)
    before = first.baseline_path.read_bytes()
    other = run(store, workload={"requests": 200, "rate": 8.0}, slow=2.0)
    assert other.status == checker.MISMATCH and not other.verdicts and not other.failed
    assert "another workload" in other.message and other.candidate_path.exists()
    assert first.baseline_path.read_bytes() == before
    assert run(store, "strict", workload={"requests": 200, "rate": 8.0}).failed


def test_refresh_replaces_and_shows_what_it_replaced(store):
    run(store, refresh=True)
    refreshed = run(store, seed=4, slow=1.5, refresh=True)
    assert refreshed.status == checker.REFRESHED and not refreshed.failed
    assert refreshed.regressions                       # compared with the old one first
    assert run(store, seed=5, slow=1.5).status == checker.COMPARED
    assert not run(store, seed=5, slow=1.5).failed


def test_unreadable_baseline_is_an_error_and_kept_unless_refreshing(store):
    path = run(store, refresh=True).baseline_path
    path.write_text(path.read_text()[:500])
    with pytest.raises(BaselineError, match=re.escape(str(path))):
        run(store)
    assert len(path.read_text()) == 500
    fixed = run(store, refresh=True)
    assert fixed.status == checker.REFRESHED and "unreadable" in fixed.message
    assert run(store).status == checker.COMPARED
