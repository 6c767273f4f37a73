"""Inputs of the micro-benchmarks (marker ``micro``; ``pytest -m micro`` runs them, the default
``tox -e test`` leaves them out). Each input is the size the suite meets in a real run: one
streamed answer of 256 tokens, one vLLM-sized ``/metrics`` page, 400 requests a side at the
gate, a results document of a full session."""
from __future__ import annotations

import json

import pytest

TOKENS = 256


def completion_stream(tokens: int = TOKENS) -> bytes:
    """An OpenAI ``/v1/completions`` stream as vLLM sends it: one event per token, then [DONE]."""
    events = []
    for i in range(tokens):
        chunk = {"id": "cmpl-8f2c", "object": "text_completion", "created": 1764000000, "model": "tiny-llama-cpu",
                 "choices": [{"index": 0, "text": f" tok{i}", "logprobs": None, "finish_reason": None,
                              "stop_reason": None}], "usage": None}
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def metrics_page(requests: float, engines: int = 2) -> str:
    """A ``/metrics`` page shaped like vLLM's: counters, gauges and latency histograms per engine."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    labels = ["engine", "model_name"]
    counters = [Counter(f"vllm:{n}", n, labels, registry=registry) for n in (
        "prompt_tokens", "generation_tokens", "request_success", "num_preemptions", "prefix_cache_queries",
        "prefix_cache_hits", "external_prefix_cache_queries", "external_prefix_cache_hits")]
    gauges = [Gauge(f"vllm:{n}", n, labels, registry=registry) for n in (
        "num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")]
    buckets = [0.001 * 2 ** k for k in range(20)]
    histograms = [Histogram(f"vllm:{n}", n, labels, buckets=buckets, registry=registry) for n in (
        "time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
        "request_queue_time_seconds", "request_prefill_time_seconds", "request_decode_time_seconds")]
    for engine in range(engines):
        lab = {"engine": str(engine), "model_name": "tiny-llama-cpu"}
        for i, c in enumerate(counters):
            c.labels(**lab).inc(requests * (i + 1))
        for g in gauges:
            g.labels(**lab).set(engine)
        for h in histograms:
            for k in range(20):
                h.labels(**lab).observe(0.0015 * 1.7 ** k)
    return generate_latest(registry).decode()


@pytest.fixture(scope="session")
def sse_stream() -> tuple[bytes, list[str]]:
    """The stream and the texts a correct parser gets out of it."""
    return completion_stream(), [f" tok{i}" for i in range(TOKENS)]


@pytest.fixture(scope="session")
def metrics_pages() -> tuple[str, str]:
    return metrics_page(100.0), metrics_page(340.0)
