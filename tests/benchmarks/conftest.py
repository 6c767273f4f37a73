"""Shared state of the benchmark modules: the probed rate ladder and colocated reference curves."""
from __future__ import annotations

import pytest

from pytest_disagg.sweep import probe_saturation, rate_ladder, sweep_spec


@pytest.fixture(scope="session")
def sweep_ladder(disagg_options, disagg_config, disagg_get_deployment, disagg_results):
    """Rates at 25/50/75/100 % of colocated serving's probed capacity (rounded onto the R10 grid)."""
    colocated = disagg_get_deployment(disagg_config("colocated", prefix_caching=False))
    probe = probe_saturation(colocated, sweep_spec(disagg_options.device, 1.0))
    ladder = rate_ladder(probe["saturation_rps"])
    disagg_results.derived["saturation_probe"] = {**probe, "ladder": ladder, "deployment": colocated.key}
    return ladder


@pytest.fixture(scope="session")
def colocated_curves():
    """(prefix_caching, metric) -> {rate: samples}, filled by the colocated sweep, read by the others."""
    return {}
