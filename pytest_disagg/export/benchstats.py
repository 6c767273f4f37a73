"""The ``stats`` block of a pytest-benchmark entry, from samples or from a stored summary.

From samples it is pytest-benchmark's own :class:`pytest_benchmark.stats.Stats` (the class that
writes its JSON), so a tool reading our file sees the numbers it would have computed itself from
``data``; ``iterations`` is 1 (every sample is one request or one run). This module once computed
them itself; on the committed example results the two agreed on every entry.

A summary (results files written before samples were stored) gives ``min``, ``max``, ``mean``,
``median``, ``rounds`` and ``total`` exactly and the standard deviation after the n/(n − 1)
correction; the quartiles and what depends on them are *estimates* (linear between the stored
quantiles: q1 halfway between min and p50, q3 at 25/40 of the way from p50 to p90) and the outlier
counts are unknown (0): :func:`from_summary` says which fields are estimated.
"""
from __future__ import annotations

import math
from typing import Sequence

from pytest_benchmark.stats import Stats

ESTIMATED_FROM_SUMMARY = ("q1", "q3", "iqr", "ld15iqr", "hd15iqr", "iqr_outliers", "stddev_outliers", "outliers")


def from_samples(values: Sequence[float]) -> dict:
    """The full stats block of ``values`` (at least one finite number)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no samples")
    if not all(math.isfinite(v) for v in data):
        raise ValueError("samples contain NaN or infinity")
    stats = Stats()
    for value in data:
        stats.update(value)
    return {**stats.as_dict(), "iterations": 1}


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


__all__ = ["ESTIMATED_FROM_SUMMARY", "from_samples", "from_summary"]
