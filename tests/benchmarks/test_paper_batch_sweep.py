"""The seed study's batch sweep (--disagg-preset=paper): every request of a batch sent at once,
fixed input/output lengths; median TTFT and TPOT, prefill and decode throughput, J/token.

Every batch is preceded by a warm-up batch of the same shape (the preset's ``warmup`` batches,
default 1; its count is in each run's results entry): on a lent H200, batch 2 measured without one
came out 14 % (TTFT), 29 % (TPOT) and 12 % (J/token) above a warmed-up measurement. Skipped at
collection without a preset (``preset`` marker), so no deployment starts for it."""
from __future__ import annotations

import pytest

from pytest_disagg.load import WorkloadSpec, all_at_once, fixed


@pytest.mark.latency
@pytest.mark.energy
@pytest.mark.preset
def test_paper_batch_sweep(disagg_deployment, disagg_preset, disagg_options, disagg_bench):
    workload = disagg_preset.workload(disagg_options.device, len(disagg_options.gpus))
    d = disagg_deployment
    for batch in workload["batches"]:
        # warm-up = a whole batch sent at once before the measured one (WorkloadSpec sends its
        # warm-up requests together, before the measured phase and outside the energy window)
        spec = WorkloadSpec(arrival=all_at_once(), num_requests=batch, prompt=fixed(workload["input_tokens"]),
                            output=fixed(workload["output_tokens"]), seed=batch, max_wall_s=1800.0,
                            warmup=batch * workload["warmup"], request_timeout_s=1800.0,
                            name=f"{workload['preset']}-batch")
        run, entry = disagg_bench.run(d, spec, benchmark="paper-batch-sweep", load=f"batch={batch}",
                                      extra={"batch": batch, "scaled": workload["scaled"]})
        summary = run.summary()
        ttft = summary["ttft_ms"]["p50"] / 1e3
        e2e = summary["e2el_ms"]["p50"] / 1e3
        entry["extra"].update({
            "prefill_throughput_tok_s": batch * workload["input_tokens"] / ttft if ttft > 0 else None,
            "decode_throughput_tok_s": batch * (workload["output_tokens"] - 1) / (e2e - ttft) if e2e > ttft else None,
        })
