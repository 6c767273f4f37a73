"""Metric definitions and the arithmetic that turns request records into run figures.

Why one table: the gate must know which way is better and the report which unit to print, and
both must agree with the numbers users know from ``vllm bench serve`` and vLLM's dashboards.
So names and meanings follow vLLM's benchmark exactly:

- TTFT: send → first token-bearing chunk;  E2EL: send → last token-bearing chunk;
- TPOT: (E2EL − TTFT) / (output tokens − 1), per request, requests with one token left out;
- ITL: gaps between consecutive token-bearing chunks (a chunk carrying several tokens is one gap);
- goodput: requests per second that met every SLO given (TTFT, TPOT, E2EL; a one-token request's
  TPOT counts as 0, as in vLLM);
- throughputs divide by the measured phase's wall time (first send to last answer).

Summaries give mean, p50, p90, p99 (numpy's linear interpolation, like vLLM) with percentile-
bootstrap confidence intervals: resampling is vectorised in blocks (bounded memory for long ITL
lists) and seeded, so the same samples always give the same intervals. ITL samples within a
request are not independent; their intervals are therefore narrower than the truth — gate on
per-request figures (TTFT, TPOT, E2EL) when that matters. This module needs numpy only: records
are read through their attributes (``ok``, ``ttft_ms``, ``tpot_ms``, ``e2el_ms``,
``output_tokens``, ``prompt_tokens``), never imported from the client.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

DIRECTIONS = ("lower", "higher")
QUANTILES = (50, 90, 99)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_BLOCK_ELEMENTS = 2_000_000       # resampled values held at once (16 MB of float64)


class MetricError(ValueError):
    """An unknown metric name, or samples that cannot be summarised."""


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: str      # "lower" | "higher": which way is better
    kind: str           # "request": per-request samples; "run": one figure per run
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("ttft_ms", "ms", "lower", "request", "time to first token: send to the first token-bearing chunk"),
    Metric("tpot_ms", "ms", "lower", "request", "time per output token after the first: (E2EL - TTFT) / (tokens - 1)"),
    Metric("itl_ms", "ms", "lower", "request", "inter-token latency: gap between consecutive token-bearing chunks"),
    Metric("e2el_ms", "ms", "lower", "request", "end-to-end latency: send to the last token-bearing chunk"),
    Metric("prefill_ms", "ms", "lower", "request", "proxy: request arrival to the prefill server's answer"),
    Metric("handoff_ms", "ms", "lower", "request", "proxy: prefill answer to the decode request (KV hand-off)"),
    Metric("decode_ttft_ms", "ms", "lower", "request", "proxy: decode request to its first streamed byte"),
    Metric("request_throughput", "req/s", "higher", "run", "completed requests per second of the measured phase"),
    Metric("output_throughput", "tok/s", "higher", "run", "output tokens per second of the measured phase"),
    Metric("total_token_throughput", "tok/s", "higher", "run", "prompt + output tokens per second"),
    Metric("goodput", "req/s", "higher", "run", "requests per second that met every SLO"),
    Metric("goodput_fraction", "1", "higher", "run", "share of the requests that met every SLO"),
    Metric("energy_j_per_token", "J/token", "lower", "run", "energy per (prompt + output) token"),
    Metric("energy_j_per_request", "J/req", "lower", "run", "energy per request"),
    Metric("energy_total_j", "J", "lower", "run", "energy of the measured window, all components"),
    Metric("energy_gpu_j", "J", "lower", "run", "GPU energy of the measured window"),
)}


def describe(name: str) -> Metric:
    """The table's entry; per-stage/component energy figures (``energy_<x>_j``,
    ``energy_<x>_j_per_<y>_token``) are lower-is-better joules. Unknown names are an error."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith("energy_"):
        per_token = "_j_per_" in name and name.endswith("_token")
        if per_token or name.endswith("_j"):
            return Metric(name, "J/token" if per_token else "J", "lower", "run", "energy figure (energy attribution)")
    raise MetricError(f"unknown metric {name!r}; known: {sorted(METRICS)} and energy_*_j[_per_*_token]")


# --- per-request figures and run scalars ---------------------------------------------------

def meets_slo(record, slo) -> bool:
    """vLLM's goodput rule: every limit given is met (a one-token request's TPOT is 0)."""
    checks = (("ttft_ms", record.ttft_ms), ("tpot_ms", record.tpot_ms or 0.0), ("e2el_ms", record.e2el_ms))
    for name, value in checks:
        limit = getattr(slo, name, None)
        if limit is not None and (value is None or value > limit):
            return False
    return True


def run_scalars(records: Sequence, duration_s: float, slo=None) -> dict[str, float]:
    """Run-level figures from measured records (failed ones count for nothing but time)."""
    if not duration_s > 0:
        raise MetricError(f"duration must be > 0 s, got {duration_s}")
    ok = [r for r in records if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    scalars = {
        "request_throughput": len(ok) / duration_s,
        "output_throughput": out_tokens / duration_s,
        "total_token_throughput": (in_tokens + out_tokens) / duration_s,
    }
    if slo is not None and any(getattr(slo, k, None) is not None for k in ("ttft_ms", "tpot_ms", "e2el_ms")):
        good = sum(1 for r in ok if meets_slo(r, slo))
        scalars["goodput"] = good / duration_s
        scalars["goodput_fraction"] = good / len(records) if records else 0.0
    return scalars


# --- summaries with bootstrap confidence intervals ----------------------------------------

def as_array(values: Iterable[float], what: str = "samples") -> np.ndarray:
    """Finite floats as a 1-D array, or :class:`MetricError` saying what is wrong."""
    try:
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise MetricError(f"{what}: not a list of numbers") from None
    bad = ~np.isfinite(x)
    if bad.any():
        raise MetricError(f"{what}: {int(bad.sum())} of {x.size} values are NaN or infinite")
    return x


def bootstrap(values, quantiles: Sequence[float] = QUANTILES, *, resamples: int = DEFAULT_RESAMPLES,
              confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of the mean and of each quantile (in percent)."""
    x = as_array(values)
    if x.size == 0:
        raise MetricError("no samples to bootstrap")
    if not 0.0 < confidence < 1.0:
        raise MetricError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 10:
        raise MetricError(f"resamples must be >= 10, got {resamples}")
    rng = np.random.default_rng(seed)
    n = x.size
    qs = np.asarray(quantiles, dtype=float) / 100.0
    stats = np.empty((len(qs) + 1, resamples))
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        sample = x[rng.integers(0, n, size=(stop - start, n))]
        stats[0, start:stop] = sample.mean(axis=1)
        if qs.size:
            stats[1:, start:stop] = np.quantile(sample, qs, axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail], axis=1)
    names = ["mean"] + [_qname(q) for q in quantiles]
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi)}


def summarize(values, *, quantiles: Sequence[float] = QUANTILES, confidence: float = DEFAULT_CONFIDENCE,
              resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict:
    """n, mean, std, min, max, the quantiles, and their bootstrap intervals under ``ci``.
    An empty sample gives ``{"n": 0}`` (a run whose requests all failed has no latencies)."""
    x = as_array(values)
    if x.size == 0:
        return {"n": 0}
    out = {"n": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
           "max": float(x.max())}
    for q, v in zip(quantiles, np.quantile(x, np.asarray(quantiles, dtype=float) / 100.0)):
        out[_qname(q)] = float(v)
    out["ci"] = {k: [a, b] for k, (a, b) in bootstrap(x, quantiles, resamples=resamples, confidence=confidence,
                                                        seed=seed).items()}
    out["confidence"] = confidence
    return out


def summarize_all(samples: Mapping[str, Sequence[float]], **kwargs) -> dict[str, dict]:
    """:func:`summarize` for each metric, each with its own seed offset (independent draws)."""
    seed = kwargs.pop("seed", DEFAULT_SEED)
    return {name: summarize(values, seed=seed + i, **kwargs) for i, (name, values) in enumerate(sorted(samples.items()))}


def _qname(q: float) -> str:
    return f"p{q:g}".replace(".", "_")


__all__ = ["DIRECTIONS", "METRICS", "Metric", "MetricError", "QUANTILES", "as_array", "bootstrap", "describe",
           "meets_slo", "run_scalars", "summarize", "summarize_all"]
