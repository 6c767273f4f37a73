"""The load generator against a real vLLM deployment: Poisson, closed-loop and trace replay."""
from __future__ import annotations

import pytest

from pytest_disagg.load import PrefixSharing, WorkloadSpec, concurrency, fixed, poisson, trace, uniform


def _check(run, spec):
    assert run.n_ok == spec.num_requests and run.n_failed == 0, run.first_failures()
    for r in run.measured:
        assert r.output_tokens == r.expected_output_tokens            # exact output lengths
        assert r.ttft_ms <= r.e2el_ms
    samples = run.samples()
    assert len(samples["ttft_ms"]) == spec.num_requests
    assert run.scalars()["output_throughput"] > 0
    roles = {entry["role"] for entry in run.server_metrics_delta.values()}
    assert roles == {s.role for s in run_target_servers(run)}
    assert run.proxy_records, "the proxy's stage records were not joined"


def run_target_servers(run):
    return [type("S", (), {"role": s["role"]}) for s in run.target["servers"]]


@pytest.mark.disagg(mediums=["colocated", "nixl-cpu"], prefix_caching=[False])
def test_poisson_run_against_real_deployment(disagg_deployment, disagg_load):
    spec = WorkloadSpec(arrival=poisson(4.0), num_requests=12, prompt=uniform(20, 80), output=fixed(6),
                        warmup=1, seed=3)
    run = disagg_load(disagg_deployment, spec)
    _check(run, spec)
    prompt_tokens = sum(entry["totals"].get("vllm:prompt_tokens_total", 0.0)
                        for entry in run.server_metrics_delta.values() if entry["role"] in ("colocated", "prefill"))
    assert prompt_tokens == sum(r.prompt_tokens for r in run.measured)


@pytest.mark.disagg(mediums=["colocated"], prefix_caching=[True])
def test_closed_loop_with_shared_prefix_against_real_deployment(disagg_deployment, disagg_load):
    spec = WorkloadSpec(arrival=concurrency(4), num_requests=16, prompt=fixed(96), output=fixed(4),
                        prefix=PrefixSharing(fraction=1.0, groups=2, length=64), seed=5)
    run = disagg_load(disagg_deployment, spec)
    _check(run, spec)
    hits = sum(e["totals"].get("vllm:prefix_cache_hits_total", 0.0) for e in run.server_metrics_delta.values())
    assert hits > 0, "shared prefixes with prefix caching on gave no prefix-cache hits"


@pytest.mark.disagg(mediums=["colocated"], prefix_caching=[False])
def test_trace_replay_against_real_deployment(disagg_deployment, disagg_load):
    spec = WorkloadSpec(arrival=trace("chat_small.jsonl", scale=0.25), num_requests=10, seed=1,
                        prefix=PrefixSharing(length=32))
    run = disagg_load(disagg_deployment, spec)
    _check(run, spec)
