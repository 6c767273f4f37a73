"""Load sweep (latency): every selected set-up over a ladder of its own, beside colocated.

Per set-up: its capacity, probed until two probes agree (or reported with their spread), gated
against its baseline like any figure; a ladder of its own (25/50/80/110 % of that capacity — or,
when baselines are stored, the rates the baselines ran at, so that a gated workload never moves
with what it measures); for a disaggregated medium, colocated serving measured at the same rates
(common rates), so that each medium has a curve beside colocated and a crossover entry in the
results JSON — the rate with its bootstrap interval, or "none in range" with the range. Runs that
measured the machine rather than the deployment are flagged invalid (``pytest_disagg.validity``)
and kept out of the gate and the crossover. Prefix caching off only: the sweep compares mediums,
kv_reuse compares caching.
"""
from __future__ import annotations

import pytest

from pytest_disagg import progress
from pytest_disagg.sweep import (crossover_entry, own_ladder, probe_capacity, rung_requests, stored_rates,
                                 sweep_spec)

CROSSOVER_METRICS = ("tpot_ms", "ttft_ms", "e2el_ms")
MAX_RUNGS = 8


def _samples(run, entry) -> dict[str, list[float]] | None:
    """The crossover metrics' samples of a valid run, else None."""
    if not entry.get("valid", True):
        return None
    s = run.samples()
    return {m: s[m] for m in CROSSOVER_METRICS if m in s}


def _sweep(d, rungs, *, bench, options, name: str, extra: dict) -> dict[str, dict[float, list[float]]]:
    """Run ``d`` at every (ladder index, rate); metric -> {rate: samples} of the valid runs."""
    curves: dict[str, dict[float, list[float]]] = {m: {} for m in CROSSOVER_METRICS}
    for n, (i, rate) in enumerate(rungs):
        progress.current().line(f"disagg: {d.key} {name} rung {n + 1}/{len(rungs)}: {rate:g} req/s")
        spec = sweep_spec(options.device, rate, requests=rung_requests(options.device, rate))
        run, entry = bench.run(d, spec, benchmark="load-sweep", load=f"rate={rate:g}/s",
                               name=f"{name}[r{i}]", extra={"rate": rate, "ladder_index": i, **extra})
        for metric, values in (_samples(run, entry) or {}).items():
            curves[metric][rate] = values
    return curves


@pytest.mark.latency
@pytest.mark.disagg(prefix_caching=[False])
def test_load_sweep(disagg_deployment, disagg_options, disagg_config, disagg_get_deployment, disagg_preset,
                    colocated_curves, disagg_bench, disagg_results, stored_baseline):
    d = disagg_deployment
    spec = sweep_spec(disagg_options.device, 1.0)
    progress.current().line(f"disagg: {d.key}: probing capacity")
    with disagg_bench.others_paused(d):
        capacity = probe_capacity(d, spec)
    record = {**capacity, "deployment": d.key, "medium": d.medium.name, "verdicts": [], "gate": "-"}
    disagg_results.derived.setdefault("capacity", {})[d.key] = record

    stored = stored_rates(stored_baseline, [f"load-sweep[r{i}]" for i in range(len(own_ladder(1.0)))])
    rates = stored if stored is not None else own_ladder(capacity["measured_rps"])
    record.update(rates=rates, rates_from="baseline" if stored is not None else "probe")
    curves = _sweep(d, list(enumerate(rates))[:MAX_RUNGS], bench=disagg_bench, options=disagg_options, name="load-sweep",
                    extra={"capacity_rps": capacity["measured_rps"]})
    pc = d.config.prefix_caching
    if d.medium.disaggregated:
        _crossover(d, rates, curves, colocated_curves, bench=disagg_bench, options=disagg_options,
                   results=disagg_results, reference_deployment=None if disagg_preset is not None else
                   (lambda: disagg_get_deployment(disagg_config("colocated", prefix_caching=pc))), record=record)
    elif d.medium.name == "colocated":
        for metric, by_rate in curves.items():
            colocated_curves.setdefault((pc, metric), {}).update(by_rate)
    # Capacity is gated last, so that a build that lost it still has every rung measured (those
    # above its new capacity come out saturated: invalid) before the capacity verdict fails the test.
    probe_workload = {**spec.to_json(), "probe": {"concurrency": capacity["concurrency"],
                                                  "requests": capacity["requests"]}}
    disagg_bench.record_and_enforce(record, disagg_bench.gate_figures(
        d, name="capacity", samples={}, scalars={"capacity_rps": capacity["measured_rps"]}, workload=probe_workload))


def _crossover(d, rates, curves, colocated_curves, *, bench, options, results, reference_deployment, record) -> None:
    """Colocated at this medium's rates (those it has not run at yet: the common rates), then the
    medium's crossover entry. ``reference_deployment``: None where no plain colocated set-up
    belongs to the session (a preset): only rates colocated already ran at count then."""
    pc = d.config.prefix_caching

    reference = {m: dict(colocated_curves.get((pc, m), {})) for m in CROSSOVER_METRICS}
    missing = [(i, r) for i, r in enumerate(rates[:MAX_RUNGS]) if not any(r in reference[m] for m in CROSSOVER_METRICS)]
    if missing and reference_deployment is not None:
        extra = {"reference_for": d.key, "rates_from": record["rates_from"]}
        ref = _sweep(reference_deployment(), missing, bench=bench, options=options, name="colocated-at", extra=extra)
        for metric, by_rate in ref.items():
            reference[metric].update(by_rate)
            colocated_curves.setdefault((pc, metric), {}).update(by_rate)
    entry = crossover_entry(d.medium.name, reference, curves, metrics=CROSSOVER_METRICS)
    entry.update(deployment=d.key, prefix_caching=pc)
    results.derived.setdefault("crossover", {})[d.medium.name] = entry
