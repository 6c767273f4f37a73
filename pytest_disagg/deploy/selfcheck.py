"""Proof that a disaggregated deployment really moved the KV cache.

A disaggregated set-up that silently recomputes the prompt on the decode server still answers
correctly — and measures the wrong thing. So each deployment, once started, sends a few fresh
prompts and reads the decode server's own counters:

- ``nixl_bytes``: bytes transferred / block-padded prompt tokens must equal the model's KV bytes
  per token exactly -- as the installed vLLM sizes its cache for this model, dtype and
  ``--kv-cache-dtype`` (``pytest_disagg.kvspec``: MLA latents, fp8, sliding-window and hybrid
  layers included), not as a formula guesses it;
- ``external_hits``: the decode server's external-cache hits must cover the prompts' full blocks;
- for both: the decode server computed (almost) none of the prompt itself
  (``vllm:prompt_tokens_by_source_total{source="local_compute"}``).
"""
from __future__ import annotations

import json
import math
import random
import urllib.request

from ..promparse import parse, sum_series

PROMPT_LENGTHS = (37, 100, 203)


def _label(scrape, sample_name: str, label: str) -> str | None:
    """A label's value on the first series of ``sample_name`` that carries it."""
    for sample, labels in scrape.names.values():
        if sample == sample_name and label in labels:
            return labels[label]
    return None


def _complete(url: str, model: str, prompt: list[int], max_tokens: int = 4) -> dict:
    body = json.dumps({
        "model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "stream": False,
    }).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def run_selfcheck(deployment, prompt_lengths=PROMPT_LENGTHS, seed: int | None = None) -> dict:
    """Send fresh prompts through the deployment and judge the decode server's counters."""
    decode = deployment.decode[0]
    rng = random.Random(seed)
    vocab = deployment.model.vocab_size
    prompts = [[rng.randrange(3, vocab) for _ in range(n)] for n in prompt_lengths]
    before = decode.scrape_metrics()
    for prompt in prompts:
        answer = _complete(deployment.url, deployment.model_name, prompt)
        if answer.get("usage", {}).get("completion_tokens") != 4:
            return _verdict(False, f"a self-check request did not complete: {answer}", {})
    after = decode.scrape_metrics()
    verdict = evaluate(before, after, list(prompt_lengths), deployment.medium.evidence, deployment.kv_bytes_per_token)
    spec = getattr(deployment, "kv_spec", None) or {}
    verdict["kv_bytes_source"] = spec.get("source")
    if spec.get("formula_bytes_per_token") is not None:
        verdict["formula_kv_bytes_per_token"] = spec["formula_bytes_per_token"]
    barrier = _proxy_stats(deployment.url).get("store_barrier")
    if barrier is not None:   # how the waits for asynchronous stores ended (storebarrier)
        verdict["store_barrier"] = barrier
    return verdict


def _proxy_stats(url: str) -> dict:
    try:
        with urllib.request.urlopen(url + "/disagg/stats", timeout=10) as resp:
            stats = json.loads(resp.read())
        return stats if isinstance(stats, dict) else {}
    except (OSError, ValueError):
        return {}


def evaluate(before: str, after: str, prompt_lengths: list[int], evidence: str, kv_bytes_per_token: int) -> dict:
    """Judge two scrapes of the decode server's /metrics around the self-check prompts."""
    before_scrape, after_scrape = parse(before, "decode /metrics"), parse(after, "decode /metrics")
    block = int(_label(after_scrape, "vllm:cache_config_info", "block_size") or 0)
    tokens = sum(prompt_lengths)

    def delta(name: str, **labels: str) -> float:
        return sum_series(after_scrape, name, **labels) - sum_series(before_scrape, name, **labels)

    local = delta("vllm:prompt_tokens_by_source_total", source="local_compute")
    figures: dict = {
        "prompts": len(prompt_lengths), "prompt_tokens": tokens, "block_size": block,
        "expected_kv_bytes_per_token": kv_bytes_per_token, "decode_local_compute_tokens": local,
        "evidence": evidence,
    }
    problems = []
    if not block:
        problems.append("the decode server does not export vllm:cache_config_info{block_size}")
    elif evidence == "nixl_bytes":
        moved = delta("vllm:nixl_bytes_transferred_sum")
        padded = sum(math.ceil(n / block) * block for n in prompt_lengths)
        per_token = moved / padded
        figures.update({"bytes_moved": moved, "padded_tokens": padded, "measured_kv_bytes_per_token": per_token})
        if moved <= 0:
            problems.append("the decode server reports no NIXL bytes transferred")
        elif abs(per_token - kv_bytes_per_token) > 1e-6 * kv_bytes_per_token:
            problems.append(
                f"moved {moved:.0f} B for {padded} block-padded prompt tokens = {per_token:.1f} B/token, "
                f"expected {kv_bytes_per_token} B/token as vLLM sizes this model's KV cache")
    elif evidence == "external_hits":
        hits = delta("vllm:external_prefix_cache_hits_total")
        full_blocks = sum((n // block) * block for n in prompt_lengths)
        figures.update({"external_hit_tokens": hits, "full_block_tokens": full_blocks})
        if hits <= 0:
            problems.append("the decode server reports no external KV cache hits")
        elif hits < full_blocks:
            problems.append(f"decode loaded {hits:.0f} prompt tokens from the medium, expected at least {full_blocks}")
    else:
        problems.append(f"medium declares no way to prove a transfer (evidence={evidence!r})")
    if block:
        # Decode may recompute at most the tail that does not fill a block, and the last token.
        allowed = sum(n - (n // block) * block + 1 for n in prompt_lengths)
        figures["allowed_local_compute_tokens"] = allowed
        if local > allowed:
            problems.append(f"the decode server computed {local:.0f} prompt tokens itself (allowed {allowed}): "
                            "the KV cache was recomputed, not transferred")
    return _verdict(not problems, "; ".join(problems) or "ok", figures)


def _verdict(passed: bool, explanation: str, figures: dict) -> dict:
    return {"passed": passed, "explanation": explanation, **figures}
