"""KV bytes per token as the installed vLLM sizes its cache (pytest_disagg.kvspec).

One probe subprocess (one vLLM import) sizes every fixture config: plain attention must agree
with the formula 2 x layers x KV heads x head_dim x dtype; MLA must be the latent
(kv_lora_rank + qk_rope_head_dim per layer) and an fp8 cache one byte per element -- where the
formula is wrong by 6x and 4x. No server is started."""
from __future__ import annotations

import importlib.util

import pytest

from pytest_disagg.kvspec import KVSpec, LayerKV, cross_check, validate_kv_cache_dtype
from pytest_disagg.models import MODELS_DIR, resolve_model
from pytest_disagg.options import OptionError, parse_kv_cache_dtype

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")

# (fixture, dtype, kv cache dtype, bytes per token by hand)
CASES = [
    ("tiny-llama-cpu", "float32", "auto", 2 * 2 * 2 * 32 * 4),
    ("tiny-llama-cpu", "float32", "fp8", 2 * 2 * 2 * 32 * 1),
    ("tiny-qwen3-cpu", "float32", "auto", 2 * 3 * 2 * 96 * 4),        # head_dim 96, not 256 / 4
    ("tiny-mistral-swa-cpu", "float32", "auto", 2 * 2 * 2 * 32 * 4),  # window 64: per token the same
    ("tiny-qwen3-moe-cpu", "float32", "auto", 2 * 2 * 2 * 32 * 4),
    ("tiny-deepseek-v2-lite-gpu", "bfloat16", "auto", 3 * (512 + 64) * 2),   # MLA latent, V2-Lite's 512 + 64
    ("tiny-deepseek-v2-lite-gpu", "bfloat16", "fp8", 3 * (512 + 64) * 1),
    ("tiny-llama-gpu", "bfloat16", "fp8", 2 * 16 * 8 * 128 * 1),
]


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    from pytest_disagg.kvspec import KVSpecProbe

    base = tmp_path_factory.mktemp("kvspec")
    jobs = []
    for i, (name, dtype, kv, _) in enumerate(CASES):
        model_dir = resolve_model(name).materialize(base / f"{i}-{name}")
        jobs.append({"model_dir": model_dir, "dtype": dtype, "kv_cache_dtype": kv,
                     "block_size": 32 if name.endswith("-cpu") else 16})
    return KVSpecProbe(jobs, cache_dir=base / "cache").results()


@needs_vllm
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_vllm_sizes_the_kv_cache(sized, case):
    name, dtype, kv, want = CASES[case]
    spec = sized[case]
    print(spec.describe(), spec.notes)
    assert spec.bytes_per_token == want, spec.describe()
    model = resolve_model(name)
    assert spec.use_mla == (name == "tiny-deepseek-v2-lite-gpu")
    if model.formula_applies and kv == "auto":
        assert spec.bytes_per_token == model.kv_bytes_per_token(dtype) and cross_check(spec, want) is None
    if name == "tiny-mistral-swa-cpu":
        assert spec.sliding_windows == {64: 2}, spec.layers
    if spec.use_mla:
        assert {layer.kind for layer in spec.layers} == {"MLAAttentionSpec"}
        assert model.kv_bytes_per_token(dtype) != spec.bytes_per_token     # the formula is wrong for MLA


def test_cross_check_names_a_disagreement():
    layer = LayerKV(name="l0", kind="FullAttentionSpec", bytes_per_token=512.0, page_size_bytes=16384, block_size=32)
    spec = KVSpec(bytes_per_token=1024, layers=(layer, layer), source="layers", vllm_version="x", use_mla=False,
                  cache_dtype="auto")
    assert cross_check(spec, 1024) is None
    assert "formula" in cross_check(spec, 2048)
    mla = KVSpec(bytes_per_token=480, layers=(layer,), source="layers", vllm_version="x", use_mla=True,
                 cache_dtype="auto")
    assert cross_check(mla, 3072) is None          # the formula does not apply to MLA
    assert KVSpec.from_json(spec.to_json()) == spec


def test_kv_cache_dtype_is_validated():
    assert validate_kv_cache_dtype(None) == "auto" and parse_kv_cache_dtype("fp8") == "fp8"
    with pytest.raises(OptionError, match="--disagg-kv-cache-dtype='int3'.*fp8"):
        parse_kv_cache_dtype("int3")


def test_formula_applies_only_to_plain_attention():
    assert resolve_model("tiny-llama-cpu").formula_applies and resolve_model("tiny-qwen3-cpu").formula_applies
    assert not resolve_model("tiny-deepseek-v2-lite-gpu").formula_applies
    assert not resolve_model("tiny-mistral-swa-cpu").formula_applies
    assert (MODELS_DIR / "tiny-qwen3-moe-cpu" / "config.json").is_file()


def test_equality_models_option():
    from pytest_disagg.options import parse_equality_models

    assert parse_equality_models(None, "cpu") == ("tiny-qwen3-cpu",) and parse_equality_models("", "cuda") == ()
    assert parse_equality_models("none", "cpu") == ()
    assert parse_equality_models("tiny-mistral-swa-cpu, tiny-qwen3-moe-cpu", "cpu") == (
        "tiny-mistral-swa-cpu", "tiny-qwen3-moe-cpu")
    with pytest.raises(OptionError, match="--disagg-equality-models: 'no-such-model'"):
        parse_equality_models("no-such-model", "cpu")
