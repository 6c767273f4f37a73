"""How the report reads run entries: loads, clocks, energy, components; and its plot helpers."""
from __future__ import annotations

import math

import pytest

from pytest_disagg.energy.attribution import attribute
from pytest_disagg.energy.results import EnergyFigure, EnergyWindow
from pytest_disagg.presets import energy_per_component
from pytest_disagg.report.plots import components_of
from pytest_disagg.report.runs import Estimate, clocks_of, fmt_number, run_views
from pytest_disagg.report.style import new_figure, plain_log_axis, series_labels


def doc(*runs, deployments=None):
    return {"runs": list(runs), "deployments": deployments or {}}


def run(**fields):
    return {"benchmark": "latency", "setup": "nixl-cpu", "medium": "nixl-cpu", **fields}


@pytest.mark.parametrize("entry, rate, batch, kind", [
    (run(workload={"arrival": {"kind": "poisson", "rate": 2.5}, "num_requests": 40}, load="rate=2.5"), 2.5, None, "rate"),
    (run(workload={"arrival": {"kind": "constant", "rate": "inf"}, "num_requests": 16}, load="batch=16"), None, 16,
     "batch"),
    (run(workload={"arrival": {"kind": "constant", "rate": "inf"}, "num_requests": 8}, load="all at once"), None, 8,
     "batch"),
    (run(workload={"arrival": {"kind": "concurrency", "concurrency": 4}}, load="c=4"), None, None, "other"),
    (run(load="poisson@3/s"), 3.0, None, "rate"),
    (run(load="rate=0.5"), 0.5, None, "rate"),
    (run(load="batch=32"), None, 32, "batch"),
    (run(load="batch=16", extra={"prefill_sm_mhz": 810, "decode_sm_mhz": 1260, "dry_run": True}), None, 16, "dvfs"),
])
def test_rate_batch_and_kind(entry, rate, batch, kind):
    (view,) = run_views(doc(entry))
    assert (view.rate, view.batch, view.sweep_kind) == (rate, batch, kind)


@pytest.mark.parametrize("extra, expected", [
    ({"id": "p810-d1260", "prefill_sm_mhz": 810, "decode_sm_mhz": 1260, "dry_run": True}, (810, 1260, True)),
    ({"dvfs": {"prefill_mhz": 360, "decode_mhz": 360}, "dvfs_mode": "apply"}, (360, 360, False)),
    ({"clocks": {"sm_mhz": 960, "applied": True}}, (960, 960, False)),
    ({"sm_mhz": 960}, (960, 960, None)),
    ({"other": 1}, None),
    (None, None),
])
def test_clocks_from_extra(extra, expected):
    clocks = clocks_of(extra)
    assert (None if clocks is None else (clocks.prefill_mhz, clocks.decode_mhz, clocks.dry_run)) == expected


def test_clock_labels():
    assert clocks_of({"sm_mhz": 810}).label() == "0.81 GHz"
    assert clocks_of({"prefill_sm_mhz": 360, "decode_sm_mhz": 1260}).label() == "P 0.36 / D 1.26 GHz"


def test_colocated_from_the_deployment_hand_off():
    entries = [run(setup="co-2gpus", medium="colocated-dp", deployment="d1"), run(deployment="d2"),
               run(setup="mine", medium="colocated")]
    deployments = {"d1": {"medium": {"name": "colocated-dp", "handoff": "none"}},
                   "d2": {"medium": {"name": "nixl-cpu", "handoff": "kv_params"}}}
    assert [v.colocated for v in run_views(doc(*entries, deployments=deployments))] == [True, False, True]


def test_statistic_with_its_ci_and_scalars():
    entry = run(summary={"ttft_ms": {"p50": 10.0, "ci": {"p50": [9.0, 11.5]}}, "tpot_ms": {"n": 0}},
                scalars={"output_throughput": 40.0, "total_token_throughput": 340.0})
    (view,) = run_views(doc(entry))
    assert view.stat("ttft_ms") == Estimate(10.0, 9.0, 11.5)
    assert view.stat("tpot_ms") is None                      # all requests failed: no latencies
    assert view.figure("output_throughput") == Estimate(40.0)
    assert view.prompt_throughput() == 300.0                 # total - output when not recorded


def test_energy_per_token_from_attribution_or_scalars():
    (a, b, c) = run_views(doc(run(energy={"joules_per_token": 0.5, "joules_per_token_ci": [0.45, 0.55]}),
                              run(scalars={"energy_j_per_token": 0.7}),
                              run(energy={"unavailable": "no NVML"})))
    assert a.energy_per_token() == Estimate(0.5, 0.45, 0.55)
    assert b.energy_per_token() == Estimate(0.7)
    assert c.energy_per_token() is None and c.energy_unavailable() == "no NVML"


def test_components_computed_from_host_figures_match_the_preset_table():
    window = EnergyWindow(name="w", seconds=10.0, joules_by_gpu={0: 600.0, 1: 400.0}, reliable=True,
                          method="counter", counter_period_s=0.1)
    host = [EnergyFigure("cpu-package", 200.0, 10.0, "rapl"), EnergyFigure("dram", 50.0, 10.0, "rapl"),
            EnergyFigure.missing("node", "ipmi", "no BMC")]
    att = attribute(window, prefill_gpus=[0], decode_gpus=[1], prompt_tokens=900, output_tokens=100, requests=10,
                    host=host)
    stored = run_views(doc(run(energy=att.record())))[0]
    computed = run_views(doc(run(energy=att.to_json())))[0]
    assert components_of(computed) == components_of(stored) == energy_per_component(att)
    assert components_of(computed)["node"] == {"unavailable": "no BMC"}
    assert components_of(run_views(doc(run(energy={"joules_per_token": 1.0})))[0]) is None


def test_series_labels_name_prefix_caching_only_where_it_varies():
    views = run_views(doc(run(prefix_caching=False), run(prefix_caching=True),
                          run(setup="colocated", medium="colocated", prefix_caching=False),
                          run(setup="baseline", medium="colocated", prefix_caching=False)))
    assert list(series_labels(views).values()) == [
        "nixl-cpu, prefix cache off", "nixl-cpu, prefix cache on", "colocated", "baseline (colocated)"]


@pytest.mark.parametrize("x, text", [(0.000123, "0.000123"), (0.0000123, "1.23e-05"), (0.5, "0.500"), (12.345, "12.3"), (114688, "114,688"),
                                     (0, "0"), (math.inf, "inf"), (None, "-")])
def test_fmt_number(x, text):
    assert fmt_number(x) == text


def test_log_axis_ticks_are_thinned_but_keep_the_largest_value():
    fig = new_figure(4, 3)
    ax = fig.subplots()
    ax.plot([0.5, 7], [1, 2])
    plain_log_axis(ax, "x", [0.5, 1, 2, 3, 4, 5, 6, 7], base=2)
    ticks = list(ax.get_xticks())
    assert ticks[0] == 0.5 and ticks[-1] == 7
    assert len(ticks) < 8
    assert all(math.log(b / a) / math.log(14) >= 0.07 for a, b in zip(ticks, ticks[1:]))
