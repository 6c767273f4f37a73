"""Metric formulas on synthetic records (vLLM's definitions), the METRICS table, bootstrap intervals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_disagg import metrics
from pytest_disagg.load import arrivals
from pytest_disagg.load.client import RequestRecord
from pytest_disagg.load.result import RunResult, TooManyFailures
from pytest_disagg.load.workload import SLO, WorkloadSpec, fixed

MS = 1_000_000


def record(rid="r", send=0, chunks=(10, 12, 15, 19), tokens=4, prompt=8, status="ok", warmup=False, **kw):
    rec = RequestRecord(rid, prompt, tokens, warmup=warmup, send_ns=send * MS,
                        chunk_ns=[send * MS + c * MS for c in chunks], output_tokens=tokens, status=status,
                        end_ns=(send + (chunks[-1] if chunks else 0) + 1) * MS, **kw)
    return rec


def test_request_figures_follow_vllm_definitions():
    r = record(send=100, chunks=(10, 12, 15, 19), tokens=4)
    assert r.ttft_ms == 10
    assert r.e2el_ms == 19
    assert r.tpot_ms == pytest.approx((19 - 10) / 3)
    assert r.itl_ms == [2, 3, 4]


def test_multi_token_chunks_count_in_tpot_not_in_itl():
    # 3 chunks carrying 6 tokens: ITL has 2 gaps, TPOT divides by 5.
    r = record(chunks=(10, 14, 20), tokens=6)
    assert r.itl_ms == [4, 6]
    assert r.tpot_ms == pytest.approx(10 / 5)


def test_one_token_requests_have_no_tpot_and_failed_ones_no_figures():
    assert record(chunks=(7,), tokens=1).tpot_ms is None
    bad = record(status="failed")
    assert bad.ttft_ms is None and bad.e2el_ms is None and bad.itl_ms == []


def test_goodput_needs_every_slo_and_treats_one_token_tpot_as_zero():
    fast, slow_first, slow_tokens = record(chunks=(10, 12, 14)), record(chunks=(60, 61, 62)), record(chunks=(5, 30, 55))
    one = record(chunks=(10,), tokens=1)
    slo = SLO(ttft_ms=50, tpot_ms=5)
    assert [metrics.meets_slo(r, slo) for r in (fast, slow_first, slow_tokens, one)] == [True, False, False, True]
    s = metrics.run_scalars([fast, slow_first, slow_tokens, one, record(status="failed")], 2.0, slo)
    assert s["goodput"] == 1.0 and s["goodput_fraction"] == pytest.approx(2 / 5)


def test_throughputs_count_successful_requests_over_the_duration():
    recs = [record(tokens=4, prompt=10), record(tokens=4, prompt=30), record(status="failed", tokens=4, prompt=99)]
    s = metrics.run_scalars(recs, 0.5)
    assert s == {"request_throughput": 4.0, "output_throughput": 16.0, "total_token_throughput": 96.0}
    with pytest.raises(metrics.MetricError, match="duration"):
        metrics.run_scalars(recs, 0.0)


def test_metrics_table_is_consistent_and_unknown_names_are_errors():
    for name, m in metrics.METRICS.items():
        assert m.name == name and m.direction in metrics.DIRECTIONS and m.kind in metrics.KINDS and m.family in metrics.FAMILIES and m.unit
    assert metrics.describe("ttft_ms").direction == "lower"
    assert metrics.describe("output_throughput").direction == "higher"
    assert metrics.describe("energy_decode_j_per_output_token").unit == "J/token"
    with pytest.raises(metrics.MetricError, match="unknown metric"):
        metrics.describe("ttft")


def test_summary_matches_numpy_and_is_reproducible():
    x = np.random.default_rng(0).lognormal(3, 0.5, size=500)
    s = metrics.summarize(x, seed=1)
    assert s["n"] == 500 and s["p50"] == pytest.approx(np.percentile(x, 50))
    assert s["p99"] == pytest.approx(np.percentile(x, 99)) and s["mean"] == pytest.approx(x.mean())
    for key in ("mean", "p50", "p90", "p99"):
        lo, hi = s["ci"][key]
        assert lo <= s[key] <= hi
    assert metrics.summarize(x, seed=1) == s
    assert metrics.summarize(x, seed=2)["ci"] != s["ci"]
    assert metrics.summarize([]) == {"n": 0}
    with pytest.raises(metrics.MetricError, match="NaN or infinite"):
        metrics.summarize([1.0, float("nan")])


def test_bootstrap_intervals_cover_the_truth_about_as_often_as_claimed():
    rng = np.random.default_rng(42)
    trials, covered_mean, covered_median = 200, 0, 0
    for i in range(trials):
        x = rng.exponential(1.0, size=80)
        ci = metrics.bootstrap(x, (50,), resamples=400, confidence=0.9, seed=i)
        covered_mean += ci["mean"][0] <= 1.0 <= ci["mean"][1]
        covered_median += ci["p50"][0] <= np.log(2) <= ci["p50"][1]
    # 90 % intervals: a percentile bootstrap on n=80 under-covers a little; far off means a bug.
    assert 0.78 <= covered_mean / trials <= 0.97
    assert 0.78 <= covered_median / trials <= 0.98


def test_bootstrap_blocks_large_samples_without_changing_the_answer_shape():
    x = np.random.default_rng(3).normal(10, 1, size=300_000)
    ci = metrics.bootstrap(x, (50, 99), resamples=20, seed=0)
    assert ci["p50"][0] < 10.01 and ci["p50"][1] > 9.99
    assert ci["p99"][0] < ci["p99"][1]


def run_of(records, wall_s=1.0, slo=SLO()):
    spec = WorkloadSpec(arrival=arrivals.poisson(10.0), num_requests=max(1, len(records)), prompt=fixed(8),
                        output=fixed(4), slo=slo)
    return RunResult(spec, records, t0_ns=0, wall_s=wall_s, target={"url": "http://x"})


def test_run_result_excludes_warmups_and_joins_proxy_stage_times():
    recs = [record("w", chunks=(1000, 2000, 3000, 4000), warmup=True),
            record("a", proxy={"prefill_ms": 3.0, "handoff_ms": 0.5, "decode_first_byte_ms": 4.0}),
            record("b", chunks=(20, 22, 24, 26))]
    run = run_of(recs, slo=SLO(ttft_ms=15))
    samples = run.samples()
    assert samples["ttft_ms"] == [10, 20] and len(samples["itl_ms"]) == 6
    assert samples["prefill_ms"] == [3.0] and samples["handoff_ms"] == [0.5] and samples["decode_ttft_ms"] == [4.0]
    assert run.scalars()["goodput"] == 1.0
    run.energy = {"scalars": {"energy_j_per_token": 0.25}}
    assert run.scalars()["energy_j_per_token"] == 0.25


def test_run_result_json_round_trip_keeps_samples_and_scalars():
    recs = [record("a", send=5, proxy={"prefill_ms": 1.0}), record("b", send=9, status="failed", stage="http",
                                                                  error="HTTP 500")]
    run = run_of(recs, slo=SLO(e2el_ms=100))
    data = json.loads(json.dumps(run.to_json(), allow_nan=False))
    assert data["n_ok"] == 1 and data["n_failed"] == 1 and data["first_failures"][0]["error"] == "HTTP 500"
    back = RunResult.from_json(data)
    assert back.samples() == run.samples() and back.scalars() == run.scalars()
    with pytest.raises(ValueError, match="without its records"):
        RunResult.from_json(run.to_json(records=False))


def test_failure_check_shows_the_first_failures():
    recs = [record(f"ok{i}") for i in range(98)]
    recs += [record("bad1", send=1, status="failed", stage="stream", error="reset after 3 token chunks"),
             record("bad2", send=2, status="failed", stage="http", error="HTTP 500: boom",
                    proxy={"stage_failed": "prefill"})]
    run = run_of(recs)
    assert run.failure_fraction == pytest.approx(0.02)
    with pytest.raises(TooManyFailures) as info:
        run.check_failures(max_fraction=0.01)
    text = str(info.value)
    assert "2 of 100 requests failed (2.0% > 1.0%)" in text
    assert "bad1 [stream]: reset after 3 token chunks" in text and "(proxy stage prefill)" in text
    run.check_failures(max_fraction=0.05)   # within the limit: no error
    assert run.stages()["proxy_failures"] == {"prefill": 1}
