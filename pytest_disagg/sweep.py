"""Load sweeps: find saturation with a short probe, lay a rate ladder under it, and locate the
rate where a disaggregated medium starts (or stops) beating colocated serving.

Saturation is probed, never assumed — but it is rounded down onto a coarse geometric grid
(the R10 series: 1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8 × 10^k), so that run-to-run noise in the
probe yields the same ladder, the same workload hashes, and therefore baselines that compare.
A genuine change in capacity moves the ladder, and the baseline gate reports it as a new
workload rather than silently comparing different loads.
"""
from __future__ import annotations

import dataclasses
import math

from . import stats
from .load import WorkloadSpec, concurrency, fixed, poisson, run_workload

R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


# The sweep's request shape: small enough for the tiny CPU model, larger on a GPU.
SHAPES = {"cpu": {"prompt": 192, "output": 32, "requests": 40},
          "cuda": {"prompt": 1024, "output": 64, "requests": 40}}


def sweep_shape(device: str) -> dict:
    return SHAPES["cpu" if device == "cpu" else "cuda"]


def sweep_spec(device: str, rate: float, seed: int = 7) -> WorkloadSpec:
    """The load sweep's workload at one rate (Poisson arrivals, fixed lengths, two warm-ups)."""
    s = sweep_shape(device)
    return WorkloadSpec(arrival=poisson(rate), num_requests=s["requests"], prompt=fixed(s["prompt"]),
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
    run = run_workload(deployment, probe, progress=False)
    run.check_failures()
    measured = run.n_ok / run.wall_s if run.wall_s > 0 else 0.0
    return {"measured_rps": measured, "saturation_rps": round_down_r10(measured), "concurrency": concurrency_n,
            "requests": requests}


def rate_ladder(saturation_rps: float, fractions=DEFAULT_FRACTIONS) -> list[float]:
    return [round(saturation_rps * f, 6) for f in fractions]


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
