"""The stored-baseline gate: a verdict per metric, from a baseline's samples and the current ones.

Rule (why both conditions): a change is ``regressed`` only when it is statistically significant
**and** larger than the metric's tolerance — the bootstrap confidence interval of the ratio of
medians lies entirely beyond the tolerance band on the worse side. Significance alone fails on
harmless 0.5 % shifts once samples are many; a fixed threshold on one statistic (pytest-benchmark's
``--benchmark-compare-fail=median:5%``) fails on noise when samples are few. ``improved`` is the
mirror image; an interval entirely inside the band is ``same``; one that straddles a bound is
``undecided`` (the data can neither show nor rule out a change of that size). The words and the
rule are :mod:`pytest_disagg.verdicts`' (shared with the A/B verdict), the interval is
:mod:`pytest_disagg.stats`'; a metric on one side only is ``not compared`` with its reason.

"Worse" follows the metric's direction (:mod:`pytest_disagg.metrics`): for lower-is-better
metrics the gate reads the ratio current/baseline, for higher-is-better ones baseline/current.
Run-level scalars (a throughput or J/token from one window) have no samples: they are judged on
the tolerance alone and the verdict says so (method ``no-ci``).

Why the tolerance must exceed deployment drift: the interval covers the noise *within* two runs,
not the drift *between* two deployments of the same software (8-28 % in median latency on an
H200, 17 % on the CPU box). The family defaults in ``metrics.DEFAULT_TOLERANCES`` are set above
the measured drift; an A/B run (both sides interleaved in one session) is the way to see less.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from tabulate import tabulate

from .. import stats
from .. import verdicts as words
from ..metrics import DIRECTIONS, describe, tolerance_for

DEFAULT_CONFIDENCE = 0.99
MIN_SAMPLES = 10          # fewer per side: the bootstrap CI of a median is not worth stating

# The gate's verdicts are the vocabulary's words (older result files' words are mapped on reading).
REGRESSION, IMPROVEMENT, OK, INCONCLUSIVE = words.REGRESSED, words.IMPROVED, words.SAME, words.UNDECIDED
NOT_COMPARED = words.NOT_COMPARED        # a metric on one side only (the reason says which)
MISSING = NEW = NOT_COMPARED


@dataclass(frozen=True)
class Verdict:
    """One metric's comparison. ``ratio`` and ``ci`` are current/baseline (not direction-adjusted)."""

    metric: str
    verdict: str
    direction: str
    tolerance: float
    baseline: float | None = None       # median of the baseline samples, or its scalar value
    current: float | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    confidence: float | None = None
    method: str = "bootstrap"           # "bootstrap" | "no-ci" | "none"
    unit: str = ""
    n_baseline: int | None = None
    n_current: int | None = None
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict == REGRESSION

    @property
    def change(self) -> float | None:
        """Relative change current vs baseline (+0.05 = 5 % larger), whatever the direction."""
        return None if self.ratio is None else self.ratio - 1.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["ci"] = list(self.ci) if self.ci is not None else None
        data["change"] = self.change
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> "Verdict":
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["verdict"] = words.normalize(fields.get("verdict", NOT_COMPARED))
        if fields.get("ci") is not None:
            fields["ci"] = tuple(fields["ci"])
        return cls(**fields)


def _check(direction: str, tolerance: float, confidence: float | None = None) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance is a fraction in [0, 1), got {tolerance}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def classify(direction: str, tolerance: float, lo: float, hi: float) -> str:
    """The verdict for a CI ``[lo, hi]`` of the ratio current/baseline (:func:`verdicts.decide`)."""
    return words.decide(direction, tolerance, lo, hi)


def compare(baseline_samples, current_samples, direction: str, tolerance: float, *,
            confidence: float = DEFAULT_CONFIDENCE, metric: str = "", unit: str = "",
            resamples: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED,
            effective_n: tuple[int | None, int | None] = (None, None)) -> Verdict:
    """Per-request samples of one metric → a :class:`Verdict` (bootstrap CI of the ratio of medians).

    ``effective_n``: independent observations per side when the samples are not independent
    (per-token ITLs: the number of requests); the CI is then as wide as that many observations allow.
    """
    _check(direction, tolerance, confidence)
    base = stats.as_samples(baseline_samples, f"{metric or 'metric'}: baseline samples")
    cur = stats.as_samples(current_samples, f"{metric or 'metric'}: current samples")
    common = dict(metric=metric, direction=direction, tolerance=tolerance, unit=unit,
                  baseline=float(np.median(base)), current=float(np.median(cur)),
                  n_baseline=int(base.size), n_current=int(cur.size), confidence=confidence)
    if common["baseline"] <= 0.0:
        return Verdict(verdict=INCONCLUSIVE, method="none",
                       reason=f"baseline median is {common['baseline']:g}: a ratio needs a positive baseline", **common)
    n_base = min(base.size, effective_n[0] or base.size)
    n_cur = min(cur.size, effective_n[1] or cur.size)
    reason = (f"per-token samples: CI on {n_base} / {n_cur} requests"
              if (n_base, n_cur) != (base.size, cur.size) else "")
    if min(n_base, n_cur) < MIN_SAMPLES:
        return Verdict(verdict=INCONCLUSIVE, ratio=common["current"] / common["baseline"], method="none",
                       reason=f"too few samples for a CI (baseline {n_base}, now {n_cur}; "
                              f"need {MIN_SAMPLES} each)", **common)
    ratio, lo, hi = stats.ratio_of_medians(base, cur, confidence, resamples, seed, effective_n=(n_base, n_cur))
    return Verdict(verdict=classify(direction, tolerance, lo, hi), ratio=ratio, ci=(lo, hi), reason=reason, **common)


def compare_scalar(baseline_value: float, current_value: float, direction: str, tolerance: float, *,
                   metric: str = "", unit: str = "") -> Verdict:
    """A run-level figure with no samples: judged on the tolerance alone (method ``no-ci``)."""
    _check(direction, tolerance)
    base = float(stats.as_samples([baseline_value], f"{metric or 'metric'}: baseline value")[0])
    cur = float(stats.as_samples([current_value], f"{metric or 'metric'}: current value")[0])
    common = dict(metric=metric, direction=direction, tolerance=tolerance, unit=unit, baseline=base,
                  current=cur, method="no-ci", reason="run-level value: tolerance only, no CI")
    if base <= 0.0:
        return Verdict(verdict=INCONCLUSIVE, **{**common, "reason": f"baseline value {base}: no ratio"})
    ratio = cur / base
    return Verdict(verdict=classify(direction, tolerance, ratio, ratio), ratio=ratio, **common)


def compare_metrics(baseline: Mapping[str, Mapping], samples: Mapping[str, list[float]],
                    scalars: Mapping[str, float], *, tolerances: Mapping[str, float] | None = None,
                    directions: Mapping[str, str] | None = None,
                    confidence: float = DEFAULT_CONFIDENCE, seed: int = stats.DEFAULT_SEED,
                    defaults: Mapping[str, float] | None = None) -> list[Verdict]:
    """Every metric of a stored baseline (its ``metrics`` section) against this run's figures.

    A metric kept in the baseline as samples is compared with this run's samples of the same
    name; a scalar with this run's scalar. Metrics on one side only are listed (``missing`` /
    ``new``) without a judgement, so a renamed metric is visible rather than silently unchecked.
    ``defaults`` are the family tolerances for the machine (``metrics.default_tolerances``).
    """
    verdicts = []
    requests = (request_count({k: v.get("samples") or () for k, v in baseline.items() if v.get("kind") == "samples"},
                              directions), request_count(samples, directions))
    names = sorted(set(baseline) | set(samples) | set(scalars))
    for name in names:
        info = describe(name, directions)
        tol = tolerance_for(info, tolerances, defaults)
        stored = baseline.get(name)
        if stored is None:
            verdicts.append(Verdict(metric=name, verdict=NOT_COMPARED, direction=info.direction, tolerance=tol,
                                    unit=info.unit, method="none", reason="not in the baseline"))
        elif stored.get("kind") == "samples" and name in samples:
            verdicts.append(compare(stored["samples"], samples[name], info.direction, tol,
                                    confidence=confidence, metric=name, unit=info.unit, seed=seed,
                                    effective_n=requests if info.per_token else (None, None)))
        elif stored.get("kind") == "scalar" and name in scalars:
            verdicts.append(compare_scalar(stored["value"], scalars[name], info.direction, tol,
                                           metric=name, unit=info.unit))
        else:
            kind = stored.get("kind")
            verdicts.append(Verdict(metric=name, verdict=NOT_COMPARED, direction=info.direction, tolerance=tol,
                                    unit=info.unit, method="none",
                                    baseline=stored.get("median", stored.get("value")),
                                    reason=f"baseline has it as {kind}; this run has no {kind} of that name"))
    return verdicts


def request_count(samples: Mapping[str, object], directions: Mapping[str, str] | None = None) -> int | None:
    """How many requests a run's samples come from: the most samples of any per-request metric
    (TTFT, E2E, ...); None when every metric is per token (then no correction can be made)."""
    counts = [len(v) for k, v in samples.items() if not describe(k, directions).per_token and len(v)]
    return max(counts) if counts else None


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}"
    return f"{text} {unit}".rstrip()


def _pct(value: float) -> str:
    return f"{value * 100:+.1f} %"


def table_rows(verdicts: list[Verdict]) -> list[list[str]]:
    rows = []
    for v in verdicts:
        change = "-" if v.change is None else _pct(v.change)
        if v.ci is not None:
            ci = f"[{_pct(v.ci[0] - 1)}, {_pct(v.ci[1] - 1)}]"
        else:
            ci = "no-ci" if v.method == "no-ci" else "-"
        better = "lower" if v.direction == "lower" else "higher"
        verdict = v.verdict + (f": {v.reason}" if v.reason and v.method != "no-ci" else "")
        rows.append([v.metric, _number(v.baseline, v.unit), _number(v.current, v.unit), change, ci,
                     f"±{v.tolerance * 100:g} % ({better} better)", verdict])
    return rows


def format_table(verdicts: list[Verdict], tablefmt: str = "simple") -> str:
    """The failure message: metric, baseline, now, change, CI of the change, tolerance, verdict."""
    confidence = next((v.confidence for v in verdicts if v.confidence), DEFAULT_CONFIDENCE)
    headers = ["metric", "baseline", "now", "change", f"{confidence * 100:g} % CI", "tolerance", "verdict"]
    return tabulate(table_rows(verdicts), headers=headers, tablefmt=tablefmt, disable_numparse=True)


def summary_word(verdicts: list[Verdict]) -> str:
    """The worst verdict of a set, for one-word summaries ("-" when there is none)."""
    return words.worst((v.verdict for v in verdicts), empty="-")


__all__ = ["DEFAULT_CONFIDENCE", "IMPROVEMENT", "INCONCLUSIVE", "MIN_SAMPLES", "MISSING", "NEW", "NOT_COMPARED", "OK",
           "REGRESSION", "Verdict", "classify", "compare", "compare_metrics", "compare_scalar", "request_count",
           "format_table", "summary_word", "table_rows"]
