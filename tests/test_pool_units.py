"""Pieces of the deployment pool that need no server: placement, ids, the KV self-check verdict."""
from __future__ import annotations

from pytest_disagg.deploy.pool import DeploymentConfig, assign_cpu_cores, assign_gpus
from pytest_disagg.deploy.selfcheck import evaluate
from pytest_disagg.models import resolve_model


def test_gpu_assignment_halves_and_sharing():
    assert assign_gpus(("prefill", "decode"), (0, 1)) == [(0,), (1,)]
    assert assign_gpus(("prefill", "decode"), (0, 1, 2, 3)) == [(0, 1), (2, 3)]
    assert assign_gpus(("prefill", "decode"), (3,)) == [(3,), (3,)]          # shared
    assert assign_gpus(("colocated",), (0, 1)) == [(0,)]
    assert assign_gpus(("colocated", "colocated"), (0, 1)) == [(0,), (1,)]   # data parallel
    assert assign_gpus(("prefill", "decode"), ()) == [(), ()]


def test_cpu_cores_are_disjoint():
    assert assign_cpu_cores(2, n_cores=2) == ["0", "1"]
    assert assign_cpu_cores(2, n_cores=8) == ["0-3", "4-7"]
    assert assign_cpu_cores(1, n_cores=2) == ["0"]
    assert assign_cpu_cores(1, n_cores=8) == ["0-3"]


def test_config_ids_and_digest():
    a = DeploymentConfig(medium="nixl-cpu", prefix_caching=True)
    b = DeploymentConfig(medium="nixl-cpu", prefix_caching=True, variant="fault")
    assert a.key() == "nixl-cpu-pc1" and b.key() == "nixl-cpu-pc1-fault"
    assert a.digest() != b.digest()
    assert DeploymentConfig(medium="colocated-dp", label="co-2gpus").key() == "co-2gpus-pc0"


def _metrics(block=32, nixl_bytes=0.0, ext_hits=0.0, local=0.0):
    return "\n".join([
        "# TYPE vllm:cache_config_info gauge",
        f'vllm:cache_config_info{{block_size="{block}",engine="0"}} 1.0',
        "# TYPE vllm:nixl_bytes_transferred histogram",
        f'vllm:nixl_bytes_transferred_sum{{engine="0"}} {nixl_bytes}',
        f'vllm:nixl_bytes_transferred_count{{engine="0"}} 1.0',
        "# TYPE vllm:external_prefix_cache_hits counter",
        f'vllm:external_prefix_cache_hits_total{{engine="0"}} {ext_hits}',
        "# TYPE vllm:prompt_tokens_by_source counter",
        f'vllm:prompt_tokens_by_source_total{{engine="0",source="local_compute"}} {local}',
        "",
    ])


def test_nixl_bytes_must_match_model_shape():
    lengths = [37, 100]                      # padded to 64 + 128 = 192 tokens at block 32
    ok = evaluate(_metrics(), _metrics(nixl_bytes=192 * 1024), lengths, "nixl_bytes", 1024)
    assert ok["passed"] and ok["measured_kv_bytes_per_token"] == 1024
    wrong = evaluate(_metrics(), _metrics(nixl_bytes=192 * 512), lengths, "nixl_bytes", 1024)
    assert not wrong["passed"] and "512.0 B/token, expected 1024" in wrong["explanation"]
    none = evaluate(_metrics(), _metrics(), lengths, "nixl_bytes", 1024)
    assert not none["passed"] and "no NIXL bytes" in none["explanation"]


def test_recomputation_is_caught():
    lengths = [100]
    bad = evaluate(_metrics(), _metrics(nixl_bytes=128 * 1024, local=100), lengths, "nixl_bytes", 1024)
    assert not bad["passed"] and "recomputed, not transferred" in bad["explanation"]


def test_external_hits_cover_full_blocks():
    lengths = [37, 100]                      # full blocks: 32 + 96
    assert evaluate(_metrics(), _metrics(ext_hits=128, local=5 + 4), lengths, "external_hits", 1024)["passed"]
    short = evaluate(_metrics(), _metrics(ext_hits=32), lengths, "external_hits", 1024)
    assert not short["passed"] and "expected at least 128" in short["explanation"]


def test_kv_bytes_per_token_from_model_shape():
    assert resolve_model("tiny-llama-cpu").kv_bytes_per_token("float32") == 2 * 2 * 2 * 32 * 4
    assert resolve_model("tiny-llama-gpu").kv_bytes_per_token("bfloat16") == 64 * 1024
