"""The A/B benchmark (latency): the device's A/B workload (ab/workload.py), run in rounds on side A
and side B when ``--disagg-ab`` is given (the verdicts land in the results JSON's ``ab`` section
and in the terminal table); without ``--disagg-ab`` it is skipped — stored baselines are the load
sweep's job. The workload (``pytest_disagg.ab.workload``) is the one ``benchmarks/ab_power.py`` measures the
verdict's false alarms and power on."""
from __future__ import annotations

import pytest

from pytest_disagg.ab.pytest_plugin import ab_session
from pytest_disagg.ab.runner import side_a_config
from pytest_disagg.ab.workload import shape_for
from pytest_disagg.deploy.pool import with_overrides


@pytest.fixture
def ab_only(request):
    """Skips before any deployment starts (it comes first in the test's arguments)."""
    if ab_session(request.config) is None:
        pytest.skip("A/B benchmark: runs only with --disagg-ab")


@pytest.mark.latency
def test_ab_latency(ab_only, request, disagg_deployment_config, disagg_get_deployment, disagg_pool, disagg_options,
                    disagg_bench):
    shape = shape_for(disagg_options.device)       # the device's shape (ab/workload.py), its context
    config = disagg_deployment_config
    if config.max_model_len < shape.max_model_len:
        config = with_overrides(config, max_model_len=shape.max_model_len)
    d = disagg_get_deployment(side_a_config(config, ab_session(request.config), disagg_pool))
    disagg_bench.run(d, shape.spec(), benchmark="ab-latency", load=f"concurrency={shape.concurrency}",
                     extra={"concurrency": shape.concurrency, "shape": shape.name})
