"""Stage-wise clocks (dvfs): the prefill clock × decode clock grid, energy and latency per point;
the points go into the results JSON for the Pareto frontier. Dry-run on machines where clocks may
not change (the lent GPUs): then every point runs at the current clocks and the report says so."""
from __future__ import annotations

import pytest

from pytest_disagg.energy.attribution import gpus_by_role

from pytest_disagg.sweep import sweep_spec


@pytest.mark.dvfs
@pytest.mark.disagg(prefix_caching=[False])
def test_stagewise_clocks(disagg_deployment, disagg_options, disagg_dvfs_point, disagg_clocks, disagg_energy_meter,
                          sweep_ladder, disagg_bench, disagg_results):
    d = disagg_deployment
    roles = gpus_by_role(d.servers)
    point = disagg_dvfs_point
    settings = {g: point.prefill for g in roles["prefill"]}
    for g in roles["decode"]:
        if g in settings and settings[g] != point.decode:
            pytest.skip(f"prefill and decode share GPU {g}: stage-wise clocks {point.id} cannot be set apart")
        settings[g] = point.decode
    dry_run = disagg_clocks.mode != "apply"
    with disagg_clocks.locked(settings) as plans:
        rate = sweep_ladder[1]
        run, _ = disagg_bench.run(d, sweep_spec(disagg_options.device, rate, seed=17), benchmark="dvfs", load=point.id,
                                  name=f"dvfs[{point.id}]", gate=False,
                                  extra={"prefill_mhz": point.prefill_sm_mhz, "decode_mhz": point.decode_sm_mhz,
                                         "dry_run": dry_run, "plans": [p.to_json() for p in plans]})
    disagg_results.add_dvfs_point({
        "deployment": d.key, "point": point.id, "prefill_mhz": point.prefill_sm_mhz,
        "decode_mhz": point.decode_sm_mhz, "dry_run": dry_run,
        "e2el_ms_p50": run.summary()["e2el_ms"]["p50"], "j_per_token": (run.energy or {}).get("joules_per_token"),
    })
