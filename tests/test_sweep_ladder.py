"""The load ladder: repeated capacity probes, each set-up's own rungs, rates from stored
baselines, and the crossover entry (a rate, or "none in range" with the range)."""
from __future__ import annotations

import numpy as np
import pytest

from pytest_disagg import sweep


def probes(values):
    it = iter(values)
    return lambda _d, _spec: {"measured_rps": next(it), "concurrency": 8, "requests": 24}


def test_probes_repeat_until_two_agree():
    cap = sweep.probe_capacity(None, None, probe=probes([10.0, 14.0, 13.5, 99.0]))
    assert cap["probes_rps"] == [10.0, 14.0, 13.5] and cap["stable"]
    assert cap["measured_rps"] == 13.5 and cap["spread"] == pytest.approx(4.0 / 13.5)


def test_unstable_probes_stop_at_the_limit_and_say_so():
    cap = sweep.probe_capacity(None, None, probe=probes([1.0, 5.0, 20.0]), max_probes=3)
    assert cap["probes_rps"] == [1.0, 5.0, 20.0] and not cap["stable"] and cap["spread"] == pytest.approx(3.8)
    with pytest.raises(ValueError, match="max_probes"):
        sweep.probe_capacity(None, None, probe=probes([1.0]), max_probes=0)


def test_own_ladder_reaches_110_percent_in_at_least_three_rungs():
    for capacity in (0.67, 2.28, 8.53, 51.0):
        rungs = sweep.own_ladder(capacity)
        assert len(rungs) >= 3 and rungs == sorted(set(rungs))
        assert rungs[-1] == pytest.approx(1.1 * capacity, rel=0.06) and rungs[0] < 0.3 * capacity


def test_stored_rates_come_from_every_rung_or_not_at_all():
    docs = {f"r{i}": {"workload": {"arrival": {"kind": "poisson", "rate": r}}} for i, r in enumerate((1.0, 2.0, 3.5))}
    assert sweep.stored_rates(docs.get, ["r0", "r1", "r2"]) == [1.0, 2.0, 3.5]
    assert sweep.stored_rates(docs.get, ["r0", "r1", "r2", "r3"]) is None            # a rung without baseline
    docs["r1"]["workload"]["arrival"] = {"kind": "concurrency", "concurrency": 8}
    assert sweep.stored_rates(docs.get, ["r0", "r1"]) is None                        # no rate to reuse


def curve(rates, level, slope, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return {r: list(level + slope * r + rng.normal(0, 0.5, n)) for r in rates}


def test_crossover_entry_finds_the_crossing_on_common_rates():
    rates = [1.0, 2.0, 3.0, 4.0]
    colocated = {"tpot_ms": curve(rates + [10.0], 5.0, 3.0, seed=1)}     # colocated worsens fast with load
    medium = {"tpot_ms": curve(rates, 11.0, 0.0, seed=2)}                # the medium is flat
    e = sweep.crossover_entry("nixl-cpu", colocated, medium, metrics=("tpot_ms",))
    assert e["medium"] == "nixl-cpu" and e["metric"] == "tpot_ms" and e["rates"] == rates
    assert 1.5 < e["rate"] < 2.5 and e["direction"] == "disaggregated better above the crossover"
    assert e["range"] == [1.0, 4.0]


def test_no_crossing_is_an_explicit_none_in_range():
    rates = [0.5, 1.0, 1.5]
    e = sweep.crossover_entry("disk", {"ttft_ms": curve(rates, 5.0, 0.0)}, {"ttft_ms": curve(rates, 50.0, 1.0)},
                              metrics=("ttft_ms",))
    assert e["rate"] is None and e["range"] == [0.5, 1.5]
    assert e["note"].startswith("none in range 0.5–1.5 req/s") and "colocated better" in e["note"]


def test_fewer_than_two_common_rates_say_why():
    e = sweep.crossover_entry("disk", {"ttft_ms": curve([1.0], 5.0, 0.0)}, {"ttft_ms": curve([1.0, 2.0], 5.0, 0.0)},
                              metrics=("ttft_ms",))
    assert e["rate"] is None and "1 common valid rate" in e["note"]


def test_slow_rungs_send_fewer_requests_but_enough_to_judge():
    assert sweep.rung_requests("cpu", 50.0) == 40 and sweep.rung_requests("cpu", 0.2) == sweep.MIN_RUNG_REQUESTS
    assert sweep.rung_requests("cpu", 1.0) == 15
    assert sweep.sweep_spec("cpu", 1.0, requests=15).num_requests == 15
