"""The prefill × decode clock grid and the latency/energy Pareto frontier."""
from __future__ import annotations

import json

import pytest

from fake_nvml import H100_SM_CLOCKS
from pytest_disagg.energy.clocks import ClockError, StageClocks
from pytest_disagg.energy.grid import dvfs_grid, evenly_spaced, parse_range_spec, snap_values
from pytest_disagg.energy.pareto import ParetoPoint, pareto


def test_evenly_spaced_matches_the_study_range():
    assert evenly_spaced(360, 1260, 4) == (360, 660, 960, 1260)
    assert evenly_spaced(360, 1260, 7) == (360, 510, 660, 810, 960, 1110, 1260)
    assert evenly_spaced(900, 900, 1) == (900,)
    for bad in ((1260, 360, 4), (0, 100, 2), (300, 400, 0), (300, 400, 1)):
        with pytest.raises(ClockError):
            evenly_spaced(*bad)


def test_parse_range_spec():
    assert parse_range_spec("360:1260:4") == (360, 1260, 4)
    for bad in ("360-1260", "a:b:c", "360:1260"):
        with pytest.raises(ClockError, match="LO:HI:N"):
            parse_range_spec(bad)


def test_grid_is_snapped_deduplicated_and_labelled():
    values = evenly_spaced(360, 1260, 4)
    snapped = snap_values(values, H100_SM_CLOCKS)
    assert snapped == (360, 660, 960, 1260)                  # multiples of 15 from 345: exact
    assert snap_values([361, 364, 1001], H100_SM_CLOCKS) == (360, 1005)
    grid = dvfs_grid(values, [1000, 1002], prefill_supported=H100_SM_CLOCKS, decode_supported=H100_SM_CLOCKS)
    assert len(grid) == 4 and {p.decode_sm_mhz for p in grid} == {1005}
    first = grid[0]
    assert first.id == "p360-d1005" and first.prefill == StageClocks(sm_mhz=360)
    assert json.loads(json.dumps(first.to_json()))["decode_sm_mhz"] == 1005
    with pytest.raises(ClockError, match="outside the supported range"):
        dvfs_grid([100], [1000], prefill_supported=H100_SM_CLOCKS)
    with pytest.raises(ClockError, match="at least one"):
        dvfs_grid([], [1000])


def test_pareto_frontier_keeps_only_undominated_points():
    pts = [
        ParetoPoint("co-2gpus", latency=20.0, energy=1.0),
        ParetoPoint("p360-d360", latency=60.0, energy=1.4),   # dominated by co-2gpus
        ParetoPoint("p1260-d1260", latency=12.0, energy=2.0),
        ParetoPoint("p810-d810", latency=15.0, energy=1.5, meta={"tpot_ms": 15.0}),
        ParetoPoint("p960-d810", latency=15.0, energy=1.6),   # same latency, more energy
        ParetoPoint("twin", latency=15.0, energy=1.5),        # equal to p810-d810: both stay
    ]
    r = pareto(pts, latency_metric="tpot_ms", energy_metric="J/token")
    assert r.frontier == ("p1260-d1260", "p810-d810", "twin", "co-2gpus")
    doc = json.loads(json.dumps(r.to_json()))
    flags = {p["label"]: p["on_frontier"] for p in doc["points"]}
    assert flags["p360-d360"] is False and flags["co-2gpus"] is True
    assert [p.label for p in r.frontier_points()] == list(r.frontier)


def test_pareto_bad_input():
    with pytest.raises(ValueError, match="finite"):
        ParetoPoint("x", latency=float("nan"), energy=1.0)
    with pytest.raises(ValueError, match="repeat"):
        pareto([ParetoPoint("a", 1, 1), ParetoPoint("a", 2, 2)], latency_metric="l", energy_metric="e")
    assert pareto([], latency_metric="l", energy_metric="e").frontier == ()
