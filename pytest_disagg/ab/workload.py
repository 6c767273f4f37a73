"""The A/B benchmark's workload, shared by ``tests/benchmarks/test_ab_latency.py`` (what users run)
and ``benchmarks/ab_power.py`` (which measures how often the verdict on it is wrong): the power and
false-alarm rates only describe the workload they were measured on.

The rate is a fixed low fraction of each set-up's capacity, never probed (the workload must not
move with what it measures). Low load keeps queueing out of TTFT, and enough requests per run keep
a run's median steady: on the 2-core box a quiet run's median TTFT moves by ~5 % at 24 requests,
while a 5 % change is what the verdict must see.
"""
from __future__ import annotations

from ..load import WorkloadSpec, fixed, poisson
from ..sweep import sweep_shape

#: (requests per second, requests per run) per medium on a CPU box; the disaggregated set-ups carry
#: ~4 req/s there (nixl-cpu after the affinity fix), colocated ~40.
CPU_LOAD = {"colocated": (8.0, 48)}
CPU_DISAGG_LOAD = (2.0, 24)
GPU_LOAD = (2.0, 40)
WARMUP = 2


def ab_load(device: str, medium: str) -> tuple[float, int]:
    return CPU_LOAD.get(medium, CPU_DISAGG_LOAD) if device == "cpu" else GPU_LOAD


def ab_spec(device: str, medium: str, *, seed: int = 5, load: tuple[float, int] | None = None) -> WorkloadSpec:
    shape = sweep_shape(device)
    rate, n = load or ab_load(device, medium)
    return WorkloadSpec(arrival=poisson(rate), num_requests=n, prompt=fixed(shape["prompt"]),
                        output=fixed(shape["output"]), warmup=WARMUP, seed=seed, max_wall_s=300.0, name="ab-latency")
