"""Tiny real checkpoints (pytest_disagg.checkpoints): built from any config, cached, and
context-sensitive -- with negative controls showing the context-sensitivity check can fail."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from pytest_disagg.checkpoints import (CheckpointError, Sensitivity, build_checkpoint, build_checkpoint_in_child,  # noqa: E402
                                       build_info, checkpoint_key, context_sensitivity, hf_greedy, init_std, last_token_only,
                                       probe_prompts)
from pytest_disagg.models import MODELS_DIR, resolve_model  # noqa: E402

#: Non-Llama architectures the equality property may run on (all build on CPU with transformers).
ARCHITECTURES = ["tiny-llama-cpu", "tiny-qwen3-cpu", "tiny-mistral-swa-cpu", "tiny-qwen3-moe-cpu",
                 "tiny-deepseek-v2-lite-gpu"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_checkpoint_is_context_sensitive(name, cache):
    """Same last token, different earlier context -> different greedy continuations (transformers
    decoding the built checkpoint); the same model shown only the last token fails the check."""
    ckpt = build_checkpoint(MODELS_DIR / name, cache)
    assert (ckpt / "model.safetensors").is_file()
    assert json.loads((ckpt / "config.json").read_text()) == json.loads((MODELS_DIR / name / "config.json").read_text())
    assert (ckpt / "tokenizer.json").is_file()
    generate = hf_greedy(ckpt)
    check = context_sensitivity(generate, resolve_model(name).vocab_size)
    print(name, build_info(ckpt), check.outputs)
    assert check.passed, check.explain()
    control = context_sensitivity(last_token_only(generate), resolve_model(name).vocab_size)
    assert not control.passed and "last-token-only" in control.explain()


def test_default_init_of_a_tiny_tied_llama_is_last_token_only(cache):
    """The negative control on a real model: at transformers' usual std 0.02 the tied embedding of
    the 128-wide Llama fixture dominates, every continuation repeats the last token, and the
    check says so. This is why ``init_std`` raises the std to 1/sqrt(hidden) for small widths."""
    cfg = json.loads((MODELS_DIR / "tiny-llama-cpu" / "config.json").read_text())
    assert init_std(cfg) == pytest.approx(128 ** -0.5)
    ckpt = build_checkpoint(MODELS_DIR / "tiny-llama-cpu", cache, init_scale=0.02)
    check = context_sensitivity(hf_greedy(ckpt), 2048)
    assert not check.passed, check.outputs
    assert all(out == [500] * 4 for out in check.outputs), check.outputs   # the probes' last token, repeated


def test_checkpoints_are_cached_by_config_and_seed(cache):
    first = build_checkpoint(MODELS_DIR / "tiny-qwen3-cpu", cache)
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert build_checkpoint(MODELS_DIR / "tiny-qwen3-cpu" / "config.json", cache) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    other = build_checkpoint(MODELS_DIR / "tiny-qwen3-cpu", cache, seed=1)
    assert other != first and (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()
    cfg = json.loads((MODELS_DIR / "tiny-qwen3-cpu" / "config.json").read_text())
    assert checkpoint_key(cfg) != checkpoint_key({**cfg, "num_hidden_layers": 2})


def test_bad_configs_are_named(tmp_path, cache):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(CheckpointError, match="model_type"):
        build_checkpoint(tmp_path, cache)
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(CheckpointError, match="could not build"):
        build_checkpoint(tmp_path, cache)


def test_a_deployments_checkpoint_is_built_in_a_child_interpreter(tmp_path):
    """What the pool calls: the same checkpoint as ``build_checkpoint``, built without importing torch
    into the calling process; the cached one is found without a child; a bad config's reason comes back."""
    script = (
        "import sys\n"
        "from pytest_disagg.checkpoints import build_checkpoint_in_child\n"
        f"print(build_checkpoint_in_child({str(MODELS_DIR / 'tiny-llama-cpu')!r}, {str(tmp_path / 'c')!r}))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported in the caller'\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = Path(proc.stdout.strip())
    assert build_checkpoint(MODELS_DIR / "tiny-llama-cpu", tmp_path / "c") == built
    assert build_info(built)["key"].startswith(built.name.rsplit("-", 1)[1])
    assert build_checkpoint_in_child(MODELS_DIR / "tiny-llama-cpu", tmp_path / "c") == built
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(CheckpointError, match="builder exited 2(.|\n)*could not build"):
        build_checkpoint_in_child(tmp_path / "bad", tmp_path / "c")


def test_sensitivity_verdicts():
    assert Sensitivity([[1, 2], [3, 4]]).passed
    assert not Sensitivity([[1, 2], [1, 2]]).passed
    assert not Sensitivity([[1, 2], "HTTP 500"]).passed and "failed" in Sensitivity([[1], "HTTP 500"]).explain()
    prompts = probe_prompts(2048)
    assert len({p[-1] for p in prompts}) == 1 and len({tuple(p[:-1]) for p in prompts}) == len(prompts)
    assert all(3 <= t < 2048 for p in prompts for t in p)
