"""Load sweep (latency): every selected medium and colocated over one rate ladder (25–100 % of
colocated serving's probed capacity), gated against baselines; the crossover rate where
disaggregation starts or stops beating colocated serving, with its bootstrap interval, goes into
the results JSON. A set-up whose own probed capacity is below a rung is not driven past it: the
rung is recorded as above its capacity (on a CPU box, a prefill/decode pair can saturate far
earlier than one colocated engine)."""
from __future__ import annotations

import pytest

from pytest_disagg.sweep import crossover, probe_saturation, sweep_spec

CROSSOVER_METRICS = ("ttft_ms", "e2el_ms", "tpot_ms")
HEADROOM = 1.1   # drive a set-up up to 110 % of its own measured capacity


@pytest.mark.latency
def test_load_sweep(disagg_deployment, disagg_options, sweep_ladder, colocated_curves, disagg_bench, disagg_results):
    d = disagg_deployment
    own = probe_saturation(d, sweep_spec(disagg_options.device, 1.0))
    rungs = [(i, r) for i, r in enumerate(sweep_ladder) if r <= own["measured_rps"] * HEADROOM]
    disagg_results.derived.setdefault("capacity", {})[d.key] = {
        **own, "ladder": sweep_ladder, "above_capacity": [r for r in sweep_ladder if r > own["measured_rps"] * HEADROOM]}
    if not rungs:
        pytest.skip(f"{d.key} saturates at {own['measured_rps']:.2f} req/s, below the ladder's lowest rung "
                    f"{sweep_ladder[0]:g} req/s (colocated capacity {sweep_ladder[-1]:g} req/s)")
    curves: dict[str, dict[float, list[float]]] = {m: {} for m in CROSSOVER_METRICS}
    for i, rate in rungs:
        run, _ = disagg_bench.run(d, sweep_spec(disagg_options.device, rate), benchmark="load-sweep",
                                  load=f"rate={rate:g}/s", name=f"load-sweep[r{i}]",
                                  extra={"rate": rate, "ladder_index": i, "capacity_rps": own["measured_rps"]})
        for metric in CROSSOVER_METRICS:
            curves[metric][rate] = run.samples()[metric]
    pc = d.config.prefix_caching
    if not d.medium.disaggregated:
        if d.medium.name == "colocated":
            for metric in CROSSOVER_METRICS:
                colocated_curves[(pc, metric)] = curves[metric]
        return
    reference = {m: colocated_curves.get((pc, m)) for m in CROSSOVER_METRICS}
    if any(v is None for v in reference.values()):
        pytest.skip("no colocated sweep with the same prefix caching ran in this session: no crossover")
    if len(rungs) < 2:
        disagg_results.derived.setdefault("crossover", {})[d.key] = {
            "medium": d.medium.name, "prefix_caching": pc,
            "note": f"only {len(rungs)} rung within capacity: no crossover can be located"}
        return
    found = {m: crossover(reference[m], curves[m], seed=7) for m in CROSSOVER_METRICS}
    disagg_results.derived.setdefault("crossover", {})[d.key] = {"medium": d.medium.name, "prefix_caching": pc, **found}
