"""The gate on synthetic data: shifts found, noise not, tolerance and direction respected,
scalars judged without a CI, and the failure table."""
from __future__ import annotations

import numpy as np
import pytest

from pytest_disagg import metrics as metric_info
from pytest_disagg import stats as bootstrap
from pytest_disagg.baseline import gate


def latencies(seed: int, n: int = 200, scale: float = 1.0, sigma: float = 0.15) -> np.ndarray:
    """Skewed like per-request latencies: lognormal around 20 ms (the CPU runs' spread is smaller)."""
    return np.random.default_rng(seed).lognormal(np.log(20.0), sigma, n) * scale


def test_a_20_percent_slowdown_with_200_samples_is_a_regression():
    v = gate.compare(latencies(1), latencies(2, scale=1.2), "lower", 0.05, metric="ttft_ms", unit="ms")
    assert v.verdict == gate.REGRESSION and v.failed
    assert v.ci[0] > 1.05 and 1.1 < v.ratio < 1.3
    assert v.n_baseline == v.n_current == 200


@pytest.mark.parametrize("seed", range(10))
def test_identical_distributions_are_not_a_regression(seed):
    v = gate.compare(latencies(100 + seed), latencies(200 + seed), "lower", 0.05)
    assert v.verdict != gate.REGRESSION and v.ci[0] < 1.05


def test_the_same_samples_are_ok():
    same = latencies(3, sigma=0.05)
    v = gate.compare(same, same.copy(), "lower", 0.05)
    assert v.verdict == gate.OK and v.ratio == 1.0 and v.ci[0] < 1.0 < v.ci[1]


def test_wide_spread_makes_a_real_shift_inconclusive_rather_than_a_guess():
    v = gate.compare(latencies(21, n=30, sigma=0.5), latencies(22, n=30, sigma=0.5, scale=1.1), "lower", 0.05)
    assert v.verdict == gate.INCONCLUSIVE and v.ci[0] < 1.05 < v.ci[1]


def test_a_significant_shift_inside_the_tolerance_is_not_a_regression():
    base, cur = latencies(4, n=5000), latencies(5, n=5000, scale=1.03)
    loose = gate.compare(base, cur, "lower", 0.05)
    assert loose.ci[0] > 1.0                               # significant...
    assert loose.verdict in (gate.OK, gate.INCONCLUSIVE)   # ...but within 5 %
    assert gate.compare(base, cur, "lower", 0.01).verdict == gate.REGRESSION


def test_a_large_shift_with_few_samples_is_inconclusive_not_a_regression():
    v = gate.compare(latencies(6, n=12), latencies(7, n=12, scale=1.08), "lower", 0.05)
    assert v.verdict in (gate.INCONCLUSIVE, gate.OK)


def test_lower_is_better_speedup_is_an_improvement():
    v = gate.compare(latencies(8), latencies(9, scale=0.8), "lower", 0.05)
    assert v.verdict == gate.IMPROVEMENT and not v.failed


def test_higher_is_better_direction():
    base = np.random.default_rng(10).normal(100.0, 5.0, 200)
    drop = np.random.default_rng(11).normal(80.0, 4.0, 200)
    rise = np.random.default_rng(12).normal(120.0, 6.0, 200)
    assert gate.compare(base, drop, "higher", 0.05).verdict == gate.REGRESSION
    assert gate.compare(base, rise, "higher", 0.05).verdict == gate.IMPROVEMENT
    assert gate.compare(base, drop, "lower", 0.05).verdict == gate.IMPROVEMENT


def test_classify_straddling_a_bound_is_inconclusive():
    assert gate.classify("lower", 0.05, 1.01, 1.09) == gate.INCONCLUSIVE
    assert gate.classify("lower", 0.05, 0.97, 1.04) == gate.OK
    assert gate.classify("lower", 0.05, 1.06, 1.09) == gate.REGRESSION
    assert gate.classify("higher", 0.05, 0.80, 0.90) == gate.REGRESSION      # throughput fell 10-20 %
    assert gate.classify("higher", 0.05, 1.10, 1.20) == gate.IMPROVEMENT


def test_too_few_samples_says_so():
    v = gate.compare([1.0] * 5, [2.0] * 5, "lower", 0.05)
    assert v.verdict == gate.INCONCLUSIVE and "too few samples" in v.reason and v.ci is None


def test_scalars_use_the_tolerance_only_and_say_no_ci():
    v = gate.compare_scalar(100.0, 85.0, "higher", 0.10, metric="output_throughput", unit="1/s")
    assert v.verdict == gate.REGRESSION and v.method == "no-ci" and v.ci is None
    assert gate.compare_scalar(100.0, 95.0, "higher", 0.10).verdict == gate.OK
    assert gate.compare_scalar(1.0, 0.8, "lower", 0.10).verdict == gate.IMPROVEMENT
    assert "no-ci" in gate.format_table([v])


def test_verdicts_are_reproducible_with_the_seed():
    a, b = latencies(13), latencies(14, scale=1.04)
    assert gate.compare(a, b, "lower", 0.02) == gate.compare(a, b, "lower", 0.02)


def test_bad_samples_and_parameters_are_clear_errors():
    with pytest.raises(bootstrap.StatsError, match="ttft_ms: current samples: 1 of 3 values are NaN"):
        gate.compare([1.0] * 20, [1.0, float("nan"), 2.0], "lower", 0.05, metric="ttft_ms")
    with pytest.raises(bootstrap.StatsError, match="no samples"):
        gate.compare([], [1.0], "lower", 0.05)
    with pytest.raises(ValueError, match="direction"):
        gate.compare([1.0] * 20, [1.0] * 20, "down", 0.05)
    with pytest.raises(ValueError, match="tolerance"):
        gate.compare([1.0] * 20, [1.0] * 20, "lower", 5)


def test_bootstrap_median_ci_covers_the_median_and_handles_large_sets():
    big = latencies(15, n=20000)
    lo, hi = bootstrap.median_ci(big, 0.95, resamples=400)
    assert lo < np.median(big) < hi and (hi - lo) / np.median(big) < 0.02


def test_compare_metrics_lists_missing_and_new_metrics():
    base = {"ttft_ms": {"kind": "samples", "samples": latencies(16).tolist()},
            "itl_ms": {"kind": "samples", "samples": latencies(17).tolist(), "median": 20.0},
            "output_throughput": {"kind": "scalar", "value": 100.0}}
    verdicts = {v.metric: v for v in gate.compare_metrics(
        base, {"ttft_ms": latencies(18, scale=1.3).tolist(), "e2el_ms": [1.0] * 20}, {"output_throughput": 99.0})}
    assert verdicts["ttft_ms"].verdict == gate.REGRESSION
    assert verdicts["itl_ms"].verdict == gate.MISSING
    assert verdicts["e2el_ms"].verdict == gate.NEW
    assert verdicts["output_throughput"].verdict == gate.OK and verdicts["output_throughput"].method == "no-ci"


def test_failure_table_has_the_columns_and_the_numbers():
    v = gate.compare(latencies(19), latencies(20, scale=1.2), "lower", 0.05, metric="ttft_ms", unit="ms")
    table = gate.format_table([v])
    for header in ("metric", "baseline", "now", "change", "99 % CI", "verdict"):
        assert header in table
    assert "ttft_ms" in table and "regressed" in table and f"{v.change * 100:+.1f} %" in table
    assert gate.Verdict.from_json(v.to_json()) == v


def test_metric_directions_units_and_tolerances():
    assert metric_info.describe("ttft_ms").direction == "lower"
    assert metric_info.describe("output_throughput").direction == "higher"
    assert metric_info.describe("j_per_token").family == "energy"
    assert metric_info.describe("goodput").direction == "higher"
    with pytest.raises(metric_info.MetricInfoError, match="directions="):
        metric_info.describe("kv_hit_rate")
    assert metric_info.describe("kv_hit_rate", {"kv_hit_rate": "higher"}).direction == "higher"
    info = metric_info.describe("tpot_ms")
    assert metric_info.tolerance_for(info) == metric_info.DEFAULT_TOLERANCES["latency"]
    assert metric_info.tolerance_for(info, {"*": 0.07}) == 0.07
    assert metric_info.tolerance_for(info, {"*": 0.07, "latency": 0.03}) == 0.03
    assert metric_info.tolerance_for(info, {"latency": 0.03, "tpot_ms": 0.01}) == 0.01


@pytest.mark.parametrize("n", [11, 12, 200, 201])
def test_exact_bootstrap_medians_match_brute_force_resampling(n):
    """The order-statistic draw must have the distribution of medians of index resamples."""
    x = latencies(30 + n, n=n, sigma=0.4)
    fast = bootstrap.bootstrap_medians(x, 50_000, np.random.default_rng(1))
    brute = np.median(x[np.random.default_rng(2).integers(0, n, (50_000, n))], axis=1)
    qs = [0.005, 0.05, 0.25, 0.5, 0.75, 0.95, 0.995]
    assert np.allclose(np.quantile(fast, qs), np.quantile(brute, qs), rtol=0.01)
    if n % 2:
        assert np.isin(fast, x).all()          # odd n: every bootstrap median is one of the samples


def test_a_zero_baseline_median_is_inconclusive_not_a_crash():
    v = gate.compare([0.0] * 30, [1.0] * 30, "lower", 0.05, metric="handoff_ms")
    assert v.verdict == gate.INCONCLUSIVE and "positive baseline" in v.reason and v.ci is None


def _clustered_run(seed: int, requests: int = 40, tokens: int = 31):
    """Per-token ITLs that move together within a request, as they do in a real stream."""
    rng = np.random.default_rng(seed)
    per_request = rng.lognormal(np.log(20.0), 0.2, requests)
    return per_request, (per_request[:, None] * rng.lognormal(0.0, 0.05, (requests, tokens))).ravel()


def test_per_token_itl_uses_the_request_as_the_unit():
    iid = by_request = 0
    for seed in range(100):
        req_a, itl_a = _clustered_run(2 * seed)
        req_b, itl_b = _clustered_run(2 * seed + 1)
        iid += gate.compare(itl_a, itl_b, "lower", 0.05).verdict == gate.REGRESSION
        verdicts = gate.compare_metrics({"ttft_ms": {"kind": "samples", "samples": req_a.tolist()},
                                         "itl_ms": {"kind": "samples", "samples": itl_a.tolist()}},
                                        {"ttft_ms": req_b.tolist(), "itl_ms": itl_b.tolist()}, {})
        itl = next(v for v in verdicts if v.metric == "itl_ms")
        assert "CI on 40 / 40 requests" in itl.reason and itl.n_baseline == 40 * 31
        by_request += itl.verdict == gate.REGRESSION
    assert iid >= 3 and by_request == 0      # tokens treated as independent raise false alarms


def test_request_count_ignores_per_token_metrics():
    assert gate.request_count({"ttft_ms": [1.0] * 40, "itl_ms": [1.0] * 1240, "e2el_ms": [1.0] * 39}) == 40
    assert gate.request_count({"itl_ms": [1.0] * 10}) is None
