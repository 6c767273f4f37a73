"""The A/B benchmark (latency): one fixed Poisson workload per deployment, run in rounds on side A
and side B when ``--disagg-ab`` is given (the verdicts land in the results JSON's ``ab`` section
and in the terminal table); without ``--disagg-ab`` it is skipped — stored baselines are the load
sweep's job. The rate is a fixed low fraction of each medium's capacity on the tiny CPU model (and
on a GPU), never probed: the workload must not move with what it measures."""
from __future__ import annotations

import pytest

from pytest_disagg.ab.pytest_plugin import ab_session
from pytest_disagg.load import WorkloadSpec, fixed, poisson
from pytest_disagg.sweep import sweep_shape

# requests per second and requests per run; nixl-cpu's capacity on a 2-core box varies a lot
# between starts, so the disaggregated CPU set-ups are kept light
CPU_LOAD = {"colocated": (4.0, 24)}
CPU_DISAGG_LOAD = (1.0, 12)
GPU_LOAD = (2.0, 40)


def ab_spec(device: str, medium: str) -> WorkloadSpec:
    shape = sweep_shape(device)
    rate, n = (CPU_LOAD.get(medium, CPU_DISAGG_LOAD) if device == "cpu" else GPU_LOAD)
    return WorkloadSpec(arrival=poisson(rate), num_requests=n, prompt=fixed(shape["prompt"]),
                        output=fixed(shape["output"]), warmup=2, seed=5, max_wall_s=300.0, name="ab-latency")


@pytest.fixture
def ab_only(request):
    """Skips before any deployment starts (it comes first in the test's arguments)."""
    if ab_session(request.config) is None:
        pytest.skip("A/B benchmark: runs only with --disagg-ab")


@pytest.mark.latency
def test_ab_latency(ab_only, disagg_deployment, disagg_options, disagg_bench):
    d = disagg_deployment
    spec = ab_spec(disagg_options.device, d.medium.name)
    disagg_bench.run(d, spec, benchmark="ab-latency", load=f"rate={spec.arrival.rate:g}/s",
                     extra={"rate": spec.arrival.rate})
