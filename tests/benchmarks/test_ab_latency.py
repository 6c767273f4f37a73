"""The A/B benchmark (latency): one fixed Poisson workload per deployment, run in rounds on side A
and side B when ``--disagg-ab`` is given (the verdicts land in the results JSON's ``ab`` section
and in the terminal table); without ``--disagg-ab`` it is skipped — stored baselines are the load
sweep's job. The workload (``pytest_disagg.ab.workload``) is the one ``benchmarks/ab_power.py`` measures the
verdict's false alarms and power on."""
from __future__ import annotations

import pytest

from pytest_disagg.ab.pytest_plugin import ab_session
from pytest_disagg.ab.workload import ab_spec


@pytest.fixture
def ab_only(request):
    """Skips before any deployment starts (it comes first in the test's arguments)."""
    if ab_session(request.config) is None:
        pytest.skip("A/B benchmark: runs only with --disagg-ab")


@pytest.mark.latency
def test_ab_latency(ab_only, disagg_deployment, disagg_options, disagg_bench):
    d = disagg_deployment
    spec = ab_spec(disagg_options.device, d.medium.name)
    disagg_bench.run(d, spec, benchmark="ab-latency", load="concurrency=1", extra={"concurrency": 1})
