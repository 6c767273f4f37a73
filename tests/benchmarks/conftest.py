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


@pytest.fixture
def stored_baseline(request):
    """``name -> document | None``: the stored baseline of this test's benchmark ``name`` on this
    machine — what a gated benchmark takes its rates from. Always None when the gate is off or
    refreshing (then the rates come from this run's probe, and become the new baselines')."""
    from pytest_disagg.baseline import fingerprint
    from pytest_disagg.baseline.pytest_plugin import SETTINGS_KEY, benchmark_id, machine_fingerprint
    from pytest_disagg.baseline.store import BaselineError, BaselineStore

    settings = request.config.stash[SETTINGS_KEY]
    if settings.mode == "off" or settings.refresh:
        return lambda name: None
    machine_hash = fingerprint.collect(machine=machine_fingerprint(request.config)).machine_hash
    store = BaselineStore(settings.directory)

    def lookup(name: str):
        try:
            return store.load(machine_hash, benchmark_id(request.node, name))
        except BaselineError:
            return None
    return lookup
