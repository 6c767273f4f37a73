"""The one statistics module: bootstrap intervals, ratio of medians, summaries, change points.

Everything that turns samples into a figure with an interval lives here, so the run summaries,
the stored-baseline gate, the A/B verdict and the crossover cannot disagree on how it is done.

Choices and why:

- **Percentile bootstrap, seeded.** Per-request latencies on a busy host are skewed with a long
  tail; the bootstrap needs no distributional assumption, and a fixed seed makes every interval
  (hence every verdict) reproducible from the same samples.
- **Medians drawn exactly** (:func:`bootstrap_medians`): a resample's median is an order
  statistic of uniforms mapped through the empirical quantile function, so cost does not grow
  with the sample count — what lets the gate's own benchmark repeat it 10^5 times.
- **Two independent samples** (:func:`ratio_of_medians`): a stored baseline and this run are
  independent runs; each side is resampled on its own. ``effective_n`` shrinks a side to its
  number of independent observations (per-token ITLs: the request is the unit).
- **Clustered samples** (:func:`clustered_ratio_of_medians`): requests within one deployment are
  correlated (they share its start-up, its cache state, its neighbours on the host), so A/B
  resamples whole rounds, not requests; rounds of A and B that ran side by side are resampled
  together (paired), which keeps the drift they share out of the interval.
- **Paired rounds, ranked** (:func:`paired_log_ratios`, :func:`signed_rank_p`,
  :func:`hodges_lehmann_ratio`): the A/B verdict works on one log ratio B/A per round (the two
  runs of a round ran back to back on the same requests). Measured on the 2-core box: a quiet
  run's median TTFT moves ~5 %, but a run the host disturbs moves 2-7x, in either side; ranks
  give such a round one vote instead of the whole verdict, and the signed-rank test is exact
  for exchangeable pairs, so its false-alarm rate holds whatever the latency distribution.
- **Change points** (:func:`change_points`): Apache Otava's E-Divisive means with the Hunter
  merge step (Fleming et al. 2023; MongoDB's), the well-kept implementation — not our own.

Errors: bad input raises :class:`StatsError` (a ``ValueError``) naming what is wrong.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20240601
DEFAULT_CONFIDENCE = 0.95
QUANTILES = (50, 90, 99)
SUMMARY_RESAMPLES = 1000          # run summaries: intervals for a table, not for a verdict
SUMMARY_SEED = 0
_BLOCK_ELEMENTS = 2_000_000       # resampled values held at once (16 MB of float64)


class StatsError(ValueError):
    """Samples the statistics cannot use (empty, not numbers, NaN or infinite), or a bad parameter."""


class Estimate(NamedTuple):
    """A statistic of one sample with its confidence interval; unpacks as ``value, lo, hi``."""

    value: float
    lo: float
    hi: float


class RatioCI(NamedTuple):
    """A ratio new/old (B/A) with its confidence interval; unpacks as ``ratio, lo, hi``."""

    ratio: float
    lo: float
    hi: float


# --- input checks ---------------------------------------------------------------------------

def as_samples(values, what: str = "samples", *, allow_empty: bool = False) -> np.ndarray:
    """A 1-D float array of finite values, or a :class:`StatsError` saying what is wrong."""
    try:
        array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float).ravel()
    except (TypeError, ValueError):
        raise StatsError(f"{what}: not a list of numbers") from None
    if array.size == 0 and not allow_empty:
        raise StatsError(f"{what}: no samples")
    bad = ~np.isfinite(array)
    if bad.any():
        raise StatsError(f"{what}: {int(bad.sum())} of {array.size} values are NaN or infinite "
                         f"(first at index {int(np.argmax(bad))})")
    return array


def check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return confidence


def _check_resamples(resamples: int) -> int:
    if int(resamples) < 10:
        raise StatsError(f"resamples must be >= 10, got {resamples}")
    return int(resamples)


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates (percentile method)."""
    check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def qname(q: float) -> str:
    """The key of a percentile in summaries: 50 → ``p50``, 99.9 → ``p99_9``."""
    return f"p{q:g}".replace(".", "_")


# --- bootstrap of one sample ----------------------------------------------------------------

def bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator,
                      effective_n: int | None = None) -> np.ndarray:
    """``resamples`` draws of the median of a with-replacement resample of ``samples``.

    ``effective_n``: the number of independent observations behind the samples, when fewer than
    the samples (per-token ITLs: a request's gaps move together, so the request is the unit). The
    resample then has ``effective_n`` draws from the same empirical distribution, which widens the
    interval by the design effect instead of pretending every token is independent.

    Drawn exactly, without building the resamples: a resample is ``F_n^-1(U_1..U_n)`` for iid
    uniforms ``U`` and the empirical quantile function ``F_n^-1``, so its k-th smallest value is
    ``F_n^-1(U_(k))``, and the k-th smallest of n uniforms is ``Beta(k, n - k + 1)``. For an odd n
    the median is the m-th order statistic (m = (n + 1) / 2); for an even n it is the mean of the
    m-th and the next, which is ``U_(m) + (1 - U_(m)) * Beta(1, n - m)`` (the least of the n - m
    uniforms above ``U_(m)``). Same distribution as resampling indices, at O(resamples).
    """
    ordered = np.sort(np.asarray(samples, dtype=float))
    n = ordered.size
    if n == 0:
        raise StatsError("bootstrap of the median: no samples")
    k = n if effective_n is None else max(1, min(int(effective_n), n))   # draws per resample
    m = (k + 1) // 2

    def quantile(u: np.ndarray) -> np.ndarray:   # F_n^-1(u) = x_(ceil(n u)), 1-based
        return ordered[np.clip(np.ceil(u * n).astype(np.int64) - 1, 0, n - 1)]

    u_m = rng.beta(m, k - m + 1, resamples)
    if k % 2 or k == 1:
        return quantile(u_m)
    u_next = u_m + (1.0 - u_m) * rng.beta(1, k - m, resamples)
    return 0.5 * (quantile(u_m) + quantile(u_next))


def bootstrap_statistics(values, statistics: Sequence[Callable[[np.ndarray], np.ndarray]], *,
                         resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Replicates of several statistics over the same index resamples: shape (len(statistics), resamples).

    Each statistic takes a (block, n) array of resamples and returns one value per row. Resampling
    runs in blocks, so memory stays bounded for long sample lists."""
    x = as_samples(values)
    resamples = _check_resamples(resamples)
    rng = np.random.default_rng(seed)
    n = x.size
    out = np.empty((len(statistics), resamples))
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        sample = x[rng.integers(0, n, size=(stop - start, n))]
        for i, statistic in enumerate(statistics):
            out[i, start:stop] = statistic(sample)
    return out


def bootstrap_ci(values, statistic: str | float | Callable[[np.ndarray], np.ndarray] = "median", *,
                 confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> Estimate:
    """``(value, lo, hi)``: a statistic of the samples and its percentile-bootstrap interval.

    ``statistic``: ``"median"`` (drawn exactly, see :func:`bootstrap_medians`), ``"mean"``, a
    percentile as a number (90 → p90), or a function of a (rows, n) array returning one value per row.
    """
    x = as_samples(values)
    check_confidence(confidence)
    if statistic == "median":
        rng = np.random.default_rng(seed)
        return Estimate(float(np.median(x)), *interval(bootstrap_medians(x, _check_resamples(resamples), rng),
                                                        confidence))
    if statistic == "mean":
        fn = lambda a: a.mean(axis=1)  # noqa: E731
    elif isinstance(statistic, (int, float)) and not isinstance(statistic, bool):
        if not 0 <= statistic <= 100:
            raise StatsError(f"percentile must be in [0, 100], got {statistic}")
        fn = lambda a, q=float(statistic) / 100.0: np.quantile(a, q, axis=1)  # noqa: E731
    elif callable(statistic):
        fn = statistic
    else:
        raise StatsError(f"statistic must be 'median', 'mean', a percentile or a function, got {statistic!r}")
    point = float(np.asarray(fn(x[None, :])).ravel()[0])
    reps = bootstrap_statistics(x, [fn], resamples=resamples, seed=seed)[0]
    return Estimate(point, *interval(reps, confidence))


def median_ci(samples, confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median."""
    _, lo, hi = bootstrap_ci(samples, "median", confidence=confidence, resamples=resamples, seed=seed)
    return lo, hi


# --- summaries ------------------------------------------------------------------------------

def quantile_summary(values, quantiles: Sequence[float] = QUANTILES) -> dict:
    """n, mean, std, min, max and the percentiles (numpy's linear interpolation, like vLLM's
    benchmark). An empty sample gives ``{"n": 0}`` (a run whose requests all failed)."""
    x = as_samples(values, allow_empty=True)
    if x.size == 0:
        return {"n": 0}
    out = {"n": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
           "max": float(x.max())}
    for q, v in zip(quantiles, np.quantile(x, np.asarray(quantiles, dtype=float) / 100.0)):
        out[qname(q)] = float(v)
    return out


def summary_cis(values, quantiles: Sequence[float] = QUANTILES, *, resamples: int = SUMMARY_RESAMPLES,
                confidence: float = DEFAULT_CONFIDENCE, seed: int = SUMMARY_SEED) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of the mean and of each percentile, from one set of resamples."""
    check_confidence(confidence)
    qs = np.asarray(quantiles, dtype=float) / 100.0
    if ((qs < 0) | (qs > 1)).any():
        raise StatsError(f"percentiles must be in [0, 100], got {list(quantiles)}")
    fns = [lambda a: a.mean(axis=1)] + [lambda a, q=q: np.quantile(a, q, axis=1) for q in qs]
    reps = bootstrap_statistics(values, fns, resamples=resamples, seed=seed)
    names = ["mean"] + [qname(q) for q in quantiles]
    return {name: interval(row, confidence) for name, row in zip(names, reps)}


def summarize(values, *, quantiles: Sequence[float] = QUANTILES, confidence: float = DEFAULT_CONFIDENCE,
              resamples: int = SUMMARY_RESAMPLES, seed: int = SUMMARY_SEED) -> dict:
    """:func:`quantile_summary` plus the bootstrap intervals under ``ci`` and the ``confidence``."""
    out = quantile_summary(values, quantiles)
    if out["n"] == 0:
        return out
    cis = summary_cis(values, quantiles, resamples=resamples, confidence=confidence, seed=seed)
    out["ci"] = {k: [a, b] for k, (a, b) in cis.items()}
    out["confidence"] = confidence
    return out


# --- ratio of medians: two independent samples ----------------------------------------------

def _positive_median(values: np.ndarray, what: str) -> float:
    median = float(np.median(values))
    if median <= 0.0:
        raise StatsError(f"{what} median is {median}: a ratio needs a positive denominator")
    return median


def _ratio_interval(num: np.ndarray, den: np.ndarray, confidence: float) -> tuple[float, float]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = num / den
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        raise StatsError("every bootstrap resample of the denominator has median 0")
    return interval(ratios, confidence)


def ratio_of_medians(baseline, current, confidence: float = DEFAULT_CONFIDENCE,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                     effective_n: tuple[int | None, int | None] = (None, None)) -> RatioCI:
    """median(current) / median(baseline) (B/A) with its bootstrap interval.

    Both sides are resampled independently (they are independent runs); ``effective_n`` gives
    each side's number of independent observations (see :func:`bootstrap_medians`). A baseline
    median of 0 makes the ratio meaningless and is an error.
    """
    base = as_samples(baseline, "baseline samples")
    cur = as_samples(current, "current samples")
    base_median = _positive_median(base, "baseline")
    resamples = _check_resamples(resamples)
    check_confidence(confidence)
    rng = np.random.default_rng(seed)
    base_boot = bootstrap_medians(base, resamples, rng, effective_n[0])
    cur_boot = bootstrap_medians(cur, resamples, rng, effective_n[1])
    return RatioCI(float(np.median(cur)) / base_median, *_ratio_interval(cur_boot, base_boot, confidence))


# --- ratio of medians: whole rounds resampled -----------------------------------------------

def _pooled(rounds: Sequence, what: str) -> tuple[np.ndarray, np.ndarray]:
    """All samples sorted, and for each the index of the round it came from."""
    if len(rounds) == 0:
        raise StatsError(f"{what}: no rounds")
    arrays = [as_samples(r, f"{what} round {i}") for i, r in enumerate(rounds)]
    values = np.concatenate(arrays)
    ids = np.concatenate([np.full(a.size, i) for i, a in enumerate(arrays)])
    order = np.argsort(values, kind="stable")
    return values[order], ids[order]


def _weighted_medians(values: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the pooled samples per row of ``counts`` (how often each round was drawn).

    ``values`` sorted; a sample weighs as often as its round was drawn. The median of the
    multiset is the mean of its two middle elements (one when the total is odd)."""
    weights = counts[:, ids]                                   # (rows, samples)
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    lo_rank = (total + 1) // 2                                 # 1-based ranks of the middle pair
    hi_rank = total // 2 + 1
    lo = values[np.argmax(cum >= lo_rank[:, None], axis=1)]
    hi = values[np.argmax(cum >= hi_rank[:, None], axis=1)]
    return 0.5 * (lo + hi)


def clustered_ratio_of_medians(a_rounds: Sequence, b_rounds: Sequence, *,
                               confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                               seed: int = DEFAULT_SEED, paired: bool | None = None) -> RatioCI:
    """Pooled median(B) / pooled median(A) with an interval from resampling whole rounds.

    ``a_rounds`` / ``b_rounds``: per-round sample arrays (one array per deployment or round). A
    bootstrap replicate draws rounds with replacement and pools their samples; the requests of a
    round stay together, because they are correlated. ``paired`` (default: when both sides have
    the same number of rounds) draws the same round indices for A and B, for rounds that ran
    side by side (A, B, A, B ...): drift they share cancels in the ratio. With few rounds the
    interval is coarse (a bootstrap of 3 rounds has few distinct replicates): that is honest.
    """
    a_vals, a_ids = _pooled(a_rounds, "A")
    b_vals, b_ids = _pooled(b_rounds, "B")
    ra, rb = len(a_rounds), len(b_rounds)
    if paired is None:
        paired = ra == rb
    if paired and ra != rb:
        raise StatsError(f"paired rounds need as many A rounds as B rounds, got {ra} and {rb}")
    resamples = _check_resamples(resamples)
    check_confidence(confidence)
    point_a = _positive_median(a_vals, "A")
    point = float(np.median(b_vals)) / point_a
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    block = max(1, _BLOCK_ELEMENTS // max(a_vals.size, b_vals.size))
    for start in range(0, resamples, block):
        rows = min(resamples, start + block) - start
        draw_a = rng.integers(0, ra, size=(rows, ra))
        draw_b = draw_a if paired else rng.integers(0, rb, size=(rows, rb))
        counts_a = (draw_a[:, :, None] == np.arange(ra)).sum(axis=1)
        counts_b = (draw_b[:, :, None] == np.arange(rb)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:start + rows] = (_weighted_medians(b_vals, b_ids, counts_b)
                                          / _weighted_medians(a_vals, a_ids, counts_a))
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        raise StatsError("every bootstrap resample of A has median 0")
    return RatioCI(point, *interval(ratios, confidence))


# --- paired rounds: signed-rank test and Hodges-Lehmann interval --------------------------------

def paired_log_ratios(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """log(b_k / a_k) per round: one figure per side and round, both positive."""
    a, b = as_samples(a, "A round figures"), as_samples(b, "B round figures")
    if a.size != b.size:
        raise StatsError(f"paired rounds need as many A figures as B figures, got {a.size} and {b.size}")
    if (a <= 0).any() or (b <= 0).any():
        raise StatsError("paired log ratios need positive figures on both sides")
    return np.log(b) - np.log(a)


def _signed_rank_null(n: int) -> np.ndarray:
    """Counts of each signed-rank sum W+ = 0..n(n+1)/2 over the 2^n sign patterns."""
    return _signed_sum_null(np.arange(1, n + 1))


def _signed_sum_null(weights: np.ndarray) -> np.ndarray:
    """Counts of each sum of a subset of the integer ``weights`` (the positive ones' ranks) over the
    2^n sign patterns: the exact null of the signed-rank sum, ties included (doubled mid-ranks)."""
    counts = np.zeros(int(weights.sum()) + 1)
    counts[0] = 1.0
    for w in weights:
        shifted = np.zeros_like(counts)
        shifted[w:] = counts[:counts.size - w]
        counts = counts + shifted
    return counts


def signed_rank_p(d: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired differences ``d`` (zeros dropped), exact
    (scipy) for up to 50 non-zero differences. With n rounds the smallest possible p is 2 / 2^n:
    0.0078 at 8 rounds, 0.0020 at 10, 0.00049 at 12. Tied differences (rounds drawn twice by a
    resampling, equal J/token readings) get the exact null of their mid-ranks over the 2^n sign
    patterns, as scipy's permutation method does by enumeration, but in milliseconds and the same
    every time (scipy takes ~0.4 s a call and samples the patterns above 13 rounds)."""
    from scipy import stats as sps   # slow to import (0.9 s on the 2-core box): only some tests need it

    d = as_samples(d, "paired differences", allow_empty=True)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    if d.size > 50:
        return float(sps.wilcoxon(d, alternative="two-sided", method="approx").pvalue)
    if np.unique(np.abs(d)).size == d.size:
        return float(sps.wilcoxon(d, alternative="two-sided", method="exact").pvalue)
    doubled = np.rint(2 * sps.rankdata(np.abs(d))).astype(int)
    null = _signed_sum_null(doubled) / 2.0 ** d.size
    observed = int(doubled[d > 0].sum())
    return float(min(1.0, 2 * min(null[:observed + 1].sum(), null[observed:].sum())))


def hodges_lehmann_ratio(d: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> RatioCI:
    """exp of the Hodges-Lehmann estimate of the paired log differences ``d`` (the median of the
    Walsh averages), with the distribution-free interval that inverts the signed-rank test: the
    k-th smallest and k-th largest Walsh averages, k from the exact null distribution. With too
    few rounds for ``confidence`` the interval is (0, inf): nothing can be claimed."""
    d = as_samples(d, "paired differences")
    check_confidence(confidence)
    n = d.size
    if np.ptp(d) == 0:                      # every round the same ratio: a degenerate sample, a point interval
        point = float(np.exp(d[0]))
        return RatioCI(point, point, point)
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    point = float(np.exp(np.median(walsh)))
    cdf = np.cumsum(_signed_rank_null(n)) / 2.0 ** n
    # the largest k with P(W+ <= k - 1) <= (1 - confidence) / 2: W_(k) .. W_(M + 1 - k) covers >= confidence
    k = int(np.searchsorted(cdf, (1.0 - confidence) / 2.0, side="right"))
    if k < 1:
        return RatioCI(point, 0.0, float("inf"))
    return RatioCI(point, float(np.exp(walsh[k - 1])), float(np.exp(walsh[walsh.size - k])))


# --- what a paired design can resolve -------------------------------------------------------

WILCOXON_ARE = 3.0 / np.pi        # signed-rank test's efficiency against the t-test, normal data


NOISE_BOUND_CONFIDENCE = 0.9     # how sure a resolution is that its rounds did not understate their noise


def paired_noise(d: Sequence[float]) -> float | None:
    """Round-to-round spread of the log ratios ``d`` as a description of the bulk: 1.4826 x their
    median absolute deviation (the SD for normal data, blind to one disturbed round). Not what
    power is planned with (``paired_sd``, ``noise_bound``). None below 4 rounds."""
    d = as_samples(d, "paired differences", allow_empty=True)
    if d.size < 4:
        return None
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def paired_sd(d: Sequence[float]) -> float | None:
    """Round-to-round SD of the log ratios ``d`` (n - 1), tail included: at the A/B rule's per-look
    levels one disturbed round of the wrong sign, ranked last of 12, lifts the exact p from 2/4096
    to 0.034, so the tail costs the rank test power and a robust spread promised more than it
    called. None below 4 rounds."""
    d = as_samples(d, "paired differences", allow_empty=True)
    return None if d.size < 4 else float(np.std(d, ddof=1))


def noise_bound(d: Sequence[float], confidence: float = NOISE_BOUND_CONFIDENCE) -> float | None:
    """``paired_sd`` raised to its one-sided ``confidence`` upper bound (chi-square on n - 1 df): the
    noise to plan power with from the rounds at hand. Twelve rounds estimate their SD loosely:
    power planned with the estimate itself averaged 85 % where 95 % was meant on simulated normal
    rounds (81-95 % on the CPU box's real rounds; 66-75 % with the robust spread used before).
    With the 90 % bound, 97 % on normal rounds and 88-99.9 % on the CPU box's samples files, the
    low end where the rounds have a heavy tail or two clusters, for which the rank test's
    efficiency is below the normal's (``benchmarks/ab_power.py`` checks it on every file). None
    below 4 rounds."""
    from scipy.stats import chi2   # slow to import: only resolution figures need it

    check_confidence(confidence)
    sd = paired_sd(d)
    if sd is None:
        return None
    df = len(d) - 1
    return float(sd * np.sqrt(df / chi2.ppf(1.0 - confidence, df)))


def exact_floor_rounds(level: float) -> int:
    """The fewest rounds at which the exact two-sided signed-rank p (at least 2 / 2^n) can reach ``level``."""
    if not 0.0 < level < 1.0:
        raise StatsError(f"level must be in (0, 1), got {level}")
    return max(1, int(np.ceil(np.log2(2.0 / level) - 1e-12)))


def _t_quantile_for(noise: float, rounds: int, level: float):
    """scipy's Student t and the two-sided ``level``'s quantile on ``rounds`` - 1 df; None below the
    exact test's floor (nothing can be called there). Shared by ``detectable_change`` and ``power_at``."""
    from scipy.stats import t as student   # slow to import: only resolution figures need it

    if noise < 0 or rounds < 0:
        raise StatsError(f"noise and rounds must be >= 0, got {noise} and {rounds}")
    if rounds < max(2, exact_floor_rounds(level)):
        return None
    return student, student.ppf(1.0 - level / 2.0, rounds - 1)


def detectable_change(noise: float, rounds: int, level: float, power: float = 0.95) -> float:
    """The smallest relative change (0.05 = 5 %) that ``rounds`` paired rounds with this round-to-round
    ``noise`` (SD of log B/A) call at two-sided ``level`` with probability ``power``: the paired
    t-test's (Student quantiles on n - 1 degrees of freedom, which also cover most of what the exact
    rank test loses to its discreteness at few rounds), scaled by the signed-rank test's efficiency;
    inf below the exact test's floor. Checked against simulated verdicts in tests/test_stats.py."""
    found = _t_quantile_for(noise, rounds, level)
    if found is None:
        return float("inf")
    student, t_level = found
    z = t_level + student.ppf(power, rounds - 1)
    return float(np.expm1(z * noise / np.sqrt(rounds * WILCOXON_ARE)))


def power_at(change: float, noise: float, rounds: int, level: float) -> float:
    """The probability that ``rounds`` paired rounds with this ``noise`` call a relative ``change`` at
    two-sided ``level``: ``detectable_change`` solved for the power (0 below the exact test's floor)."""
    found = _t_quantile_for(noise, rounds, level)
    if found is None:
        return 0.0
    if noise == 0:
        return 1.0 if change > 0 else 0.0
    student, t_level = found
    margin = np.log1p(change) * np.sqrt(rounds * WILCOXON_ARE) / noise - t_level
    return float(student.cdf(margin, rounds - 1))


def rounds_needed(noise: float, change: float, level_at: Callable[[int], float], power: float = 0.95,
                  limit: int = 100_000) -> int | None:
    """The fewest rounds that call a relative ``change`` with probability ``power``, where
    ``level_at(n)`` is the per-look level of a budget of n rounds (more rounds, more looks, a
    smaller level); None if not within ``limit``. Candidates: every count up to 64, then steps of
    5 %; found by bisection (what the rounds can call only grows with them: each added round gains
    more than the extra look costs), since every A/B verdict computes it."""
    if change <= 0:
        raise StatsError(f"change must be > 0, got {change}")
    candidates, n = [], 2
    while n <= limit:
        candidates.append(n)
        n = n + 1 if n < 64 else int(n * 1.05) + 1
    i = bisect.bisect_left(candidates, True,
                           key=lambda n: detectable_change(noise, n, level_at(n), power) <= change)
    return candidates[i] if i < len(candidates) else None


# --- crossover of two curves ----------------------------------------------------------------

def first_crossing(xs: np.ndarray, diff: np.ndarray) -> float | None:
    """First x where ``diff`` changes sign (or is 0), linearly interpolated; None if it never does."""
    for i in range(len(xs) - 1):
        a, b = diff[i], diff[i + 1]
        if a == 0:
            return float(xs[i])
        if a * b < 0:
            return float(xs[i] + (xs[i + 1] - xs[i]) * (a / (a - b)))
    if len(xs) and diff[-1] == 0:
        return float(xs[-1])
    return None


def crossing_ci(first: Sequence, second: Sequence, xs: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES,
                seed: int = DEFAULT_SEED, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Where median(first[i]) − median(second[i]) changes sign along ``xs``, with a bootstrap interval.

    Each replicate resamples every (x, side) independently (medians drawn exactly) and recomputes
    the crossing; the interval is over replicates that cross, ``p_cross`` says how many do.
    Returns ``point``, ``median_diff``, ``p_cross``, ``ci_low``, ``ci_high``."""
    xs = np.asarray(xs, dtype=float)
    if len(xs) < 2 or len(first) != len(xs) or len(second) != len(xs):
        raise StatsError("a crossing needs at least two x values and one sample list per x on each side")
    resamples = _check_resamples(resamples)
    check_confidence(confidence)
    a = [as_samples(v, f"samples at {x:g}") for v, x in zip(first, xs)]
    b = [as_samples(v, f"samples at {x:g}") for v, x in zip(second, xs)]
    diff = np.array([np.median(p) - np.median(q) for p, q in zip(a, b)])
    rng = np.random.default_rng(seed)
    boot = np.column_stack([bootstrap_medians(p, resamples, rng) - bootstrap_medians(q, resamples, rng)
                            for p, q in zip(a, b)])
    crossings = [c for c in (first_crossing(xs, row) for row in boot) if c is not None]
    lo, hi = interval(np.asarray(crossings), confidence) if crossings else (None, None)
    return {"point": first_crossing(xs, diff), "median_diff": diff.tolist(), "p_cross": len(crossings) / resamples,
            "ci_low": lo, "ci_high": hi, "confidence": confidence}


# --- change points over a history -----------------------------------------------------------

@dataclass(frozen=True)
class ChangePoint:
    """A shift in a series: the first index of the new level, the means either side, its p-value."""

    index: int
    mean_before: float
    mean_after: float
    pvalue: float

    @property
    def change(self) -> float | None:
        """Relative change of the mean (+0.1 = 10 % higher after)."""
        return None if self.mean_before == 0 else self.mean_after / self.mean_before - 1.0

    def to_json(self) -> dict:
        return {"index": self.index, "mean_before": self.mean_before, "mean_after": self.mean_after,
                "pvalue": self.pvalue, "change": self.change}


DEFAULT_CP_PVALUE = 0.001
DEFAULT_CP_WINDOW = 30


def change_points(series: Iterable[float], *, max_pvalue: float = DEFAULT_CP_PVALUE,
                  min_magnitude: float = 0.0, window: int = DEFAULT_CP_WINDOW) -> list[ChangePoint]:
    """Where a series shifted level: Apache Otava's E-Divisive means (split in sliding windows,
    then merge weak points by a t-test; Fleming et al., "Hunter", ICPE 2023).

    ``max_pvalue``: significance a change point must reach; ``min_magnitude``: smallest relative
    change of the mean kept even when significant (0 keeps all); ``window``: points per window.
    A series shorter than 4 points has no testable change point (returns none)."""
    x = as_samples(series, "series", allow_empty=True)
    if not 0.0 < max_pvalue < 1.0:
        raise StatsError(f"max_pvalue must be in (0, 1), got {max_pvalue}")
    if window < 4:
        raise StatsError(f"change-point window must be >= 4 points, got {window}")
    if x.size < 4:
        return []
    try:
        from otava.analysis import compute_change_points   # optional dependency: apache-otava (history extra)
    except ImportError:
        raise StatsError("change points need Apache Otava: pip install 'pytest-disagg[history]' "
                         "(or apache-otava)") from None

    points, _weak = compute_change_points(x.tolist(), window_len=window, max_pvalue=max_pvalue,
                                          min_magnitude=min_magnitude)
    # Means from the segments between neighbouring change points (Otava's own stats can be left
    # over from a split window); the p-value is Otava's.
    bounds = [0] + [int(cp.index) for cp in points] + [x.size]
    return [ChangePoint(bounds[i + 1], float(x[bounds[i]:bounds[i + 1]].mean()),
                        float(x[bounds[i + 1]:bounds[i + 2]].mean()), float(cp.stats.pvalue))
            for i, cp in enumerate(points)]


__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_RESAMPLES", "DEFAULT_SEED", "NOISE_BOUND_CONFIDENCE", "QUANTILES", "ChangePoint", "Estimate", "RatioCI",
           "StatsError", "as_samples", "bootstrap_ci", "bootstrap_medians", "bootstrap_statistics", "change_points",
           "check_confidence", "clustered_ratio_of_medians", "crossing_ci", "detectable_change", "exact_floor_rounds",
           "first_crossing", "interval", "median_ci", "noise_bound", "paired_noise", "paired_sd", "power_at", "qname", "quantile_summary", "ratio_of_medians",
           "rounds_needed", "summarize", "summary_cis"]
