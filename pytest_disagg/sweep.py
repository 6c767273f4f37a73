"""Load sweeps: measure capacity with short probes, lay each set-up's rate ladder under it, and
locate the rate where a disaggregated medium starts (or stops) beating colocated serving.

Capacity is probed, never assumed: closed-loop probes are repeated until two agree within
``PROBE_AGREEMENT`` (at most ``MAX_PROBES``), and the median with its spread is reported. Every
set-up gets a ladder of its *own* (``OWN_FRACTIONS`` of its capacity, up to 110 %), and colocated
serving is also measured at each disaggregated medium's rates, so each medium has a curve beside
colocated at common rates and a crossover entry — a rate, or "none in range" with the range.

A gated benchmark must not move with what it measures: when a stored baseline holds a rung, the
rung runs at the baseline's rate (:func:`stored_rates`), whatever this run's probe says; the
probed capacity is gated itself. A build that lost capacity then fails the capacity gate (and its
rungs above the new capacity are measured saturated and flagged invalid) instead of moving every
rung to new rates that no baseline knows ("mismatch, not compared").
"""
from __future__ import annotations

import dataclasses
import math
import statistics

from . import stats
from .load import WorkloadSpec, concurrency, fixed, poisson, run_workload

R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
OWN_FRACTIONS = (0.25, 0.5, 0.8, 1.1)   # each set-up's own ladder: up to 110 % of its capacity
MAX_PROBES = 3
PROBE_AGREEMENT = 0.15                 # two probes within 15 % of each other: capacity is stable


# The sweep's request shape: small enough for the tiny CPU model, larger on a GPU.
SHAPES = {"cpu": {"prompt": 192, "output": 32, "requests": 40},
          "cuda": {"prompt": 1024, "output": 64, "requests": 40}}


def sweep_shape(device: str) -> dict:
    return SHAPES["cpu" if device == "cpu" else "cuda"]


RUNG_SECONDS = 15.0     # a slow rung sends what arrives in this long (at least MIN_RUNG_REQUESTS)
MIN_RUNG_REQUESTS = 12


def rung_requests(device: str, rate: float) -> int:
    """Requests of one rung: the shape's count, fewer at low rates so that a rung of a slow set-up
    (nixl-cpu on 2 cores) takes ~RUNG_SECONDS rather than minutes. A function of the rate alone, so
    a rung at a baseline's rate has the baseline's workload."""
    full = sweep_shape(device)["requests"]
    return max(min(full, MIN_RUNG_REQUESTS), min(full, math.ceil(rate * RUNG_SECONDS)))


def sweep_spec(device: str, rate: float, seed: int = 7, requests: int | None = None) -> WorkloadSpec:
    """The load sweep's workload at one rate (Poisson arrivals, fixed lengths, two warm-ups)."""
    s = sweep_shape(device)
    return WorkloadSpec(arrival=poisson(rate), num_requests=requests or s["requests"], prompt=fixed(s["prompt"]),
                        output=fixed(s["output"]), warmup=2, seed=seed, max_wall_s=300.0, name="load-sweep")


def round_down_r10(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"saturation must be a positive finite rate, got {value!r}")
    decade = 10.0 ** math.floor(math.log10(value))
    mantissa = value / decade
    step = max(r for r in R10 if r <= mantissa + 1e-9)
    return round(step * decade, 6)


def probe_saturation(deployment, spec: WorkloadSpec, *, concurrency_n: int = 8, requests: int = 24) -> dict:
    """Closed-loop run at ``concurrency_n``: its completed requests per second is the capacity."""
    probe = dataclasses.replace(spec, arrival=concurrency(concurrency_n), num_requests=requests, warmup=2,
                                name="saturation-probe")
    run = run_workload(deployment, probe)
    run.check_failures()
    measured = run.n_ok / run.wall_s if run.wall_s > 0 else 0.0
    return {"measured_rps": measured, "saturation_rps": round_down_r10(measured), "concurrency": concurrency_n,
            "requests": requests}


def rate_ladder(saturation_rps: float, fractions=DEFAULT_FRACTIONS) -> list[float]:
    return [round(saturation_rps * f, 6) for f in fractions]


def probe_capacity(deployment, spec: WorkloadSpec, *, max_probes: int = MAX_PROBES,
                   agreement: float = PROBE_AGREEMENT, probe=probe_saturation) -> dict:
    """Probe until the last two probes agree within ``agreement`` (or ``max_probes`` ran); the
    capacity is the median of the probes, reported with their spread ((max − min) / median)."""
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")
    probes: list[dict] = []
    while len(probes) < max_probes:
        probes.append(probe(deployment, spec))
        if len(probes) >= 2:
            a, b = probes[-2]["measured_rps"], probes[-1]["measured_rps"]
            if a > 0 and b > 0 and abs(a - b) / max(a, b) <= agreement:
                break
    return capacity_summary([p["measured_rps"] for p in probes], agreement=agreement,
                            concurrency=probes[0]["concurrency"], requests=probes[0]["requests"])


def capacity_summary(values: list[float], *, agreement: float = PROBE_AGREEMENT, **extra) -> dict:
    med = float(statistics.median(values))
    spread = (max(values) - min(values)) / med if med > 0 else float("inf")
    stable = len(values) >= 2 and abs(values[-1] - values[-2]) / max(values[-1], values[-2], 1e-12) <= agreement
    return {"measured_rps": med, "probes_rps": list(values), "spread": spread, "stable": stable, **extra}


def _round_rate(rate: float) -> float:
    """Two significant digits: rates that read well in ids and tables."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"a rate must be positive and finite, got {rate!r}")
    digits = 1 - math.floor(math.log10(rate))
    return round(rate, digits)


def own_ladder(capacity_rps: float, fractions=OWN_FRACTIONS) -> list[float]:
    """A set-up's own rungs: ``fractions`` of its capacity, increasing and distinct."""
    rates = sorted({_round_rate(capacity_rps * f) for f in fractions})
    if len(rates) < len(fractions):
        raise ValueError(f"capacity {capacity_rps!r} req/s is too small to lay {len(fractions)} distinct rungs")
    return rates


def stored_rates(lookup, names: list[str]) -> list[float] | None:
    """The rates the stored baselines of ``names`` (rung names, in order) ran at, or None when
    not every rung has a readable baseline with a finite arrival rate. ``lookup(name)`` returns a
    baseline document (its ``workload`` as stored) or None."""
    rates = []
    for name in names:
        doc = lookup(name)
        arrival = ((doc or {}).get("workload") or {}).get("arrival") or {}
        rate = arrival.get("rate") if isinstance(arrival, dict) else None
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not (0 < rate < float("inf")):
            return None
        rates.append(float(rate))
    return rates


def crossover_entry(medium: str, colocated: dict[str, dict[float, list[float]]],
                    curves: dict[str, dict[float, list[float]]], metrics=("tpot_ms", "ttft_ms", "e2el_ms"),
                    seed: int = 7) -> dict:
    """The results JSON's crossover entry of one medium: per metric the crossing (or "none in
    range" with the range), and a headline — the first of ``metrics`` that crosses, else the first.

    ``colocated`` and ``curves`` map metric -> {rate: samples}; only rates present on both sides
    (the common rates, valid runs only) count."""
    by_metric: dict[str, dict] = {}
    for m in metrics:
        common = sorted(set(colocated.get(m, {})) & set(curves.get(m, {})))
        if len(common) < 2:
            by_metric[m] = {"rate": None, "rates": common, "range": [common[0], common[-1]] if common else None,
                            "note": f"{len(common)} common valid rate(s): a crossover needs 2"}
            continue
        found = crossover({r: colocated[m][r] for r in common}, {r: curves[m][r] for r in common}, seed=seed)
        found["range"] = [common[0], common[-1]]
        if found["rate"] is None:
            found["note"] = f"none in range {common[0]:g}–{common[-1]:g} req/s ({found['direction']})"
        by_metric[m] = found
    headline = next((m for m in metrics if by_metric[m].get("rate") is not None), metrics[0])
    return {"medium": medium, "metric": headline, **by_metric[headline], "by_metric": by_metric}


def crossover(colocated: dict[float, list[float]], medium: dict[float, list[float]], *, n_boot: int = 2000,
              seed: int = 0, confidence: float = 0.95) -> dict:
    """Where the medium's median crosses colocated's, with a bootstrap interval
    (:func:`stats.crossing_ci`: every (rate, side) resampled independently per replicate).

    ``colocated`` and ``medium`` map each rate to per-request samples of one lower-is-better
    metric; the interval is over replicates that cross, and ``p_cross`` says how many do.
    """
    rates = sorted(set(colocated) & set(medium))
    if len(rates) < 2:
        raise ValueError("a crossover needs at least two rates measured on both sides")
    found = stats.crossing_ci([medium[r] for r in rates], [colocated[r] for r in rates], rates,
                              resamples=n_boot, seed=seed, confidence=confidence)
    med_diff, point = found["median_diff"], found["point"]
    out = {
        "rates": [float(r) for r in rates],
        "median_diff_ms": med_diff,
        "rate": point,
        "p_cross": found["p_cross"],
        "ci_low": found["ci_low"],
        "ci_high": found["ci_high"],
        "confidence": confidence,
    }
    if point is None:
        out["direction"] = "disaggregated better at every rate" if med_diff[-1] < 0 else "colocated better at every rate"
    else:
        out["direction"] = ("disaggregated better above the crossover" if med_diff[-1] < 0
                            else "disaggregated better below the crossover")
    return out
