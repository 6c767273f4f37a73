"""Energy (energy): J per prompt token (prefill), per output token (decode), per request and per
token, per medium against colocated, at fixed fractions of colocated capacity. Needs NVML."""
from __future__ import annotations

import pytest

from pytest_disagg.energy.attribution import gpus_by_role
from pytest_disagg.sweep import stored_rates, sweep_spec

FRACTION_INDEXES = (0, 2)   # 25 % and 75 % of the probed capacity


@pytest.mark.energy
@pytest.mark.disagg(prefix_caching=[False])
def test_energy_per_token(disagg_deployment, disagg_options, disagg_energy_meter, sweep_ladder, disagg_bench,
                          stored_baseline):
    d = disagg_deployment
    # A gated benchmark runs at its baseline's rates when it has them (sweep.py: never move with the probe).
    stored = stored_rates(stored_baseline, [f"energy[r{i}]" for i in FRACTION_INDEXES])
    for n, i in enumerate(FRACTION_INDEXES):
        rate = stored[n] if stored is not None else sweep_ladder[i]
        run, entry = disagg_bench.run(d, sweep_spec(disagg_options.device, rate, seed=13), benchmark="energy",
                                      load=f"rate={rate:g}/s", name=f"energy[r{i}]", extra={"rate": rate})
        energy = run.energy
        assert energy is not None and energy["gpu_joules"] > 0, energy
        roles = gpus_by_role(d.servers)
        # Whole-GPU and labelled shared whenever prefill and decode run on a common GPU.
        assert energy["shared"] == bool(set(roles["prefill"]) & set(roles["decode"]))
