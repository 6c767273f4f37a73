"""The ``stats`` block of a pytest-benchmark entry, from samples or from a stored summary.

The definitions are pytest-benchmark's documented ones, so that a tool reading our file sees the
numbers it would have computed itself from ``data``: sample standard deviation (n − 1; 0 for one
value), ``statistics.median``, quartiles by the Wikipedia "method 2" (even n: medians of the two
halves) / "method 3" (odd n: weighted neighbours), Tukey fences at 1.5 IQR for ``iqr_outliers``,
mean ± one standard deviation for ``stddev_outliers``, ``outliers`` as ``"<stddev>;<iqr>"``,
``ld15iqr`` / ``hd15iqr`` the lowest / highest datum within the lower / upper fence (Tukey's
whisker ends; pytest-benchmark before 5.3.1 reported the first datum *past* the upper fence),
``ops`` = rounds / total and ``iterations`` = 1 (every sample is one request or one run).

A summary (results files written before samples were stored) gives ``min``, ``max``, ``mean``,
``median``, ``rounds`` and ``total`` exactly and the standard deviation after the n/(n − 1)
correction; the quartiles and what depends on them are *estimates* (linear between the stored
quantiles: q1 halfway between min and p50, q3 at 25/40 of the way from p50 to p90) and the outlier
counts are unknown (0): :func:`from_summary` says which fields are estimated.
"""
from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from typing import Sequence

ESTIMATED_FROM_SUMMARY = ("q1", "q3", "iqr", "ld15iqr", "hd15iqr", "iqr_outliers", "stddev_outliers", "outliers")


def quartiles(ordered: Sequence[float]) -> tuple[float, float]:
    n = len(ordered)
    if n == 1:
        return ordered[0], ordered[0]
    if n % 2 == 0:
        return statistics.median(ordered[: n // 2]), statistics.median(ordered[n // 2:])
    k, r = divmod(n, 4)
    if r == 1:
        return 0.25 * ordered[k - 1] + 0.75 * ordered[k], 0.75 * ordered[3 * k] + 0.25 * ordered[3 * k + 1]
    return 0.75 * ordered[k] + 0.25 * ordered[k + 1], 0.25 * ordered[3 * k + 1] + 0.75 * ordered[3 * k + 2]


def from_samples(values: Sequence[float]) -> dict:
    """The full stats block of ``values`` (at least one finite number)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no samples")
    if not all(math.isfinite(v) for v in data):
        raise ValueError("samples contain NaN or infinity")
    ordered = sorted(data)
    n = len(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = quartiles(ordered)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for v in data if v < low or v > high)
    sd_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    if n == 1:
        ld, hd = data[0], data[0]
    else:
        ld = ordered[bisect_left(ordered, low)]
        hd = ordered[bisect_right(ordered, high) - 1]   # q3 >= min and iqr >= 0: at least one datum
    total = math.fsum(data)
    return _block(min=ordered[0], max=ordered[-1], mean=mean, stddev=stddev, rounds=n, median=statistics.median(ordered),
                  iqr=iqr, q1=q1, q3=q3, iqr_outliers=iqr_out, stddev_outliers=sd_out, ld15iqr=ld, hd15iqr=hd,
                  total=total)


def from_summary(summary: dict, scale: float = 1.0) -> dict:
    """Stats from a ``metrics.summarize`` block, values multiplied by ``scale`` (see the module text)."""
    try:
        n = int(summary["n"])
        lo, hi, mean, p50 = (float(summary[k]) * scale for k in ("min", "max", "mean", "p50"))
        std = float(summary.get("std", 0.0)) * scale
        p90 = float(summary.get("p90", hi / scale)) * scale
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"summary lacks a usable {exc} field") from None
    if n < 1:
        raise ValueError("summary of no samples")
    stddev = std * math.sqrt(n / (n - 1)) if n > 1 else 0.0
    q1, q3 = lo + 0.5 * (p50 - lo), p50 + (p90 - p50) * 25.0 / 40.0
    iqr = q3 - q1
    return _block(min=lo, max=hi, mean=mean, stddev=stddev, rounds=n, median=p50, iqr=iqr, q1=q1, q3=q3,
                  iqr_outliers=0, stddev_outliers=0, ld15iqr=max(lo, q1 - 1.5 * iqr), hd15iqr=min(hi, q3 + 1.5 * iqr),
                  total=mean * n)


def _block(**s) -> dict:
    s["outliers"] = f"{s['stddev_outliers']};{s['iqr_outliers']}"
    s["ops"] = s["rounds"] / s["total"] if s["total"] else 0.0
    s["iterations"] = 1
    return s


__all__ = ["ESTIMATED_FROM_SUMMARY", "from_samples", "from_summary", "quartiles"]
