"""KV reuse (kv_reuse): a shared-prefix workload on each medium with prefix caching off and on —
TTFT, the KV bytes the medium moved, prefix-cache hits and (on a GPU) energy."""
from __future__ import annotations

import pytest

from pytest_disagg.load import PrefixSharing, WorkloadSpec, fixed, poisson

from pytest_disagg.sweep import sweep_shape


def reuse_spec(options) -> WorkloadSpec:
    s = sweep_shape(options.device)
    prompt = s["prompt"]
    return WorkloadSpec(arrival=poisson(2.0 if options.device == "cpu" else 8.0), num_requests=s["requests"],
                        prompt=fixed(prompt), output=fixed(8), prefix=PrefixSharing(fraction=0.9, groups=3,
                        length=prompt * 3 // 4), warmup=1, seed=11, name="kv-reuse")


def _delta(run, role: str, name: str) -> float:
    """Sum over the servers of ``role`` of one metric's change during the run."""
    return sum(float(entry.get("totals", {}).get(name, 0.0) or 0.0)
               for entry in run.server_metrics_delta.values() if entry.get("role") == role)


@pytest.mark.kv_reuse
def test_kv_reuse(disagg_deployment, disagg_options, disagg_bench, disagg_results):
    d = disagg_deployment
    run, entry = disagg_bench.run(d, reuse_spec(disagg_options), benchmark="kv-reuse",
                                  load=f"prefix-caching={'on' if d.config.prefix_caching else 'off'}")
    decode_role = "decode" if d.medium.disaggregated else "colocated"
    figures = {
        "decode_prefix_cache_hits": _delta(run, decode_role, "vllm:prefix_cache_hits_total"),
        "decode_prefix_cache_queries": _delta(run, decode_role, "vllm:prefix_cache_queries_total"),
        "nixl_bytes": _delta(run, "decode", "vllm:nixl_bytes_transferred_sum"),
        "external_hits": _delta(run, "decode", "vllm:external_prefix_cache_hits_total"),
    }
    entry["extra"].update(figures)
    if d.config.prefix_caching:
        assert figures["decode_prefix_cache_hits"] > 0, f"prefix caching is on but {decode_role} recorded no hits: {figures}"
