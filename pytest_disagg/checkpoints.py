"""Tiny real checkpoints for any Hugging Face architecture, whose output depends on the whole prompt.

Why: the equality property ("disaggregated greedy output = colocated output, token for token")
proves the right KV arrived only when the output depends on the KV of the whole prompt. vLLM's
``--load-format dummy`` fills every weight with U(-1e-3, 1e-3); in that regime attention adds
almost nothing to the residual stream and greedy output follows the last prompt token, so equal
tokens would prove nothing. A model built by ``transformers`` with its own initialisation
(``AutoModelForCausalLM.from_config`` under a fixed seed) has attention that matters, for every
architecture transformers knows, and is built in seconds for tiny shapes.

Usage (also for users' own configs)::

    from pytest_disagg.checkpoints import build_checkpoint, context_sensitivity, hf_greedy
    ckpt = build_checkpoint("my/config.json", cache_dir)          # config + safetensors + tokenizer
    check = context_sensitivity(hf_greedy(ckpt), vocab_size=2048)
    assert check.passed, check.explain()

Checkpoints are cached under ``cache_dir`` by a hash of the config, the seed, this builder's
version and the transformers/torch versions; they are never meant to be committed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .children import processes
from .shipped import FIXTURES_DIR
from .versions import package_version

TOKENIZER_DIR = FIXTURES_DIR / "tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
BUILDER_VERSION = 1
DEFAULT_SEED = 0
COMPLETE_MARK = ".pytest-disagg-checkpoint.json"

Generate = Callable[[Sequence[int], int], list]


class CheckpointError(RuntimeError):
    """A config transformers cannot build, or a build that did not finish."""


def _versions() -> dict[str, str]:
    """The libraries that decide the weights, from package metadata: the key of a cached checkpoint
    is known without importing torch (seconds, and never needed in pytest's own process)."""
    return {"transformers": package_version("transformers") or "", "torch": package_version("torch") or ""}


def checkpoint_key(config: dict, seed: int = DEFAULT_SEED) -> str:
    """What decides the weights: the config (canonical JSON), the seed, the builder, the libraries."""
    blob = json.dumps({"config": config, "seed": seed, "builder": BUILDER_VERSION, **_versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_config(config_path: Path) -> dict:
    try:
        cfg = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: cannot read the config ({exc})") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise CheckpointError(f"{config_path}: a Hugging Face config needs a 'model_type'")
    return cfg


def init_std(cfg: dict) -> float:
    """The initialiser's standard deviation: the config's ``initializer_range``, raised to
    1/sqrt(hidden_size) for small widths.

    With transformers' usual 0.02 and a tiny width, a tied embedding dominates the residual stream
    and the logits (every next token repeats the last one: measured on the Llama, Mistral and
    Qwen3-MoE fixtures at hidden 128); at 1/sqrt(hidden) a projection keeps the scale of its input,
    attention and MLP outweigh the embedding, and the output depends on the context.
    ``initializer_range`` is used only by the initialiser: serving is unaffected."""
    hidden = int(cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd") or 0)
    base = float(cfg.get("initializer_range") or 0.02)
    return max(base, hidden ** -0.5) if hidden > 0 else base


def _where(config_path: str | os.PathLike, cache_dir: str | os.PathLike, seed: int,
           init_scale: float | None) -> tuple[Path, dict, str, Path]:
    """The config file, its contents, the checkpoint's key and its directory in the cache."""
    config_path = Path(config_path)
    if config_path.is_dir():
        config_path = config_path / "config.json"
    cfg = _read_config(config_path)
    key = checkpoint_key({**cfg, "_init_std": init_scale or init_std(cfg)}, seed)
    return config_path, cfg, key, Path(cache_dir) / f"{config_path.parent.name}-{key[:16]}"


#: A tiny config builds in seconds; a GPU-sized one (billions of weights, float32 on the CPU) in minutes.
BUILD_TIMEOUT_S = 1800


def build_checkpoint_in_child(config_path: str | os.PathLike, cache_dir: str | os.PathLike, *,
                              seed: int = DEFAULT_SEED, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """``build_checkpoint`` in a child interpreter, unless the cache has it: torch and transformers
    (seconds to import, hundreds of MB) stay out of pytest's process, and a build that crashes
    fails the deployment that needed it, not the session. Why: a pytest-xdist worker that built
    checkpoints in its own process crashed (SIGSEGV in ``import torch``, 2026-12-08)."""
    _, _, _, target = _where(config_path, cache_dir, seed, None)
    if (target / COMPLETE_MARK).is_file():
        return target
    cmd = [sys.executable, "-m", "pytest_disagg.checkpoints", str(config_path), str(cache_dir), "--seed", str(seed)]
    env = dict(os.environ)     # the child imports this very package, also where only sys.path had it
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = processes.run(cmd, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise CheckpointError(f"{config_path}: building its checkpoint took over {timeout_s:.0f} s") from None
    built = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
    if not built or Path(built[0]) != target or not (target / COMPLETE_MARK).is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CheckpointError(f"{config_path}: the checkpoint builder exited {proc.returncode}:\n{tail}")
    return target


def build_checkpoint(config_path: str | os.PathLike, cache_dir: str | os.PathLike, *, seed: int = DEFAULT_SEED,
                     init_scale: float | None = None, tokenizer_dir: Path = TOKENIZER_DIR) -> Path:
    """A directory vLLM and transformers can load: the config as given, ``model.safetensors`` from
    the architecture's own initialisation under ``seed``, and the fixture tokenizer (unless the
    config's directory has one). Built once per key; concurrent builders of one key are safe
    (each builds aside and renames; the first rename wins)."""
    config_path, cfg, key, target = _where(config_path, cache_dir, seed, init_scale)
    if (target / COMPLETE_MARK).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    try:
        import torch      # optional dependencies (vLLM's), slow to import
        from transformers import AutoConfig, AutoModelForCausalLM

        work.mkdir(parents=True)
        (work / "config.json").write_text(json.dumps(cfg, indent=2))
        hf_config = AutoConfig.from_pretrained(work)
        std = init_std(cfg) if init_scale is None else init_scale
        hf_config.initializer_range = std
        dtype = getattr(torch, str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"), torch.float32)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_config, torch_dtype=dtype)
        model.save_pretrained(work, safe_serialization=True)
        # vLLM must see the user's config, not transformers' re-serialisation of it.
        (work / "config.json").write_text(json.dumps(cfg, indent=2))
        (work / "generation_config.json").unlink(missing_ok=True)
        src_dir = config_path.parent
        for name in TOKENIZER_FILES:
            src = src_dir / name if (src_dir / name).is_file() else tokenizer_dir / name
            shutil.copyfile(src, work / name)
        n_params = sum(p.numel() for p in model.parameters())
        (work / COMPLETE_MARK).write_text(json.dumps({
            "key": key, "seed": seed, "init_std": std, "config": str(config_path), "parameters": n_params,
            "dtype": str(dtype).removeprefix("torch."), "build_s": round(time.monotonic() - t0, 3), **_versions(),
        }, indent=2))
    except CheckpointError:
        raise
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise CheckpointError(f"{config_path}: transformers could not build a checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc
    try:
        work.rename(target)
    except OSError:   # another builder won the race; its checkpoint is the same
        shutil.rmtree(work, ignore_errors=True)
        if not (target / COMPLETE_MARK).is_file():
            raise CheckpointError(f"{target}: exists but is not a finished checkpoint") from None
    return target


def build_info(checkpoint_dir: Path) -> dict:
    """What the builder recorded (key, seed, parameters, build seconds, library versions)."""
    return json.loads((Path(checkpoint_dir) / COMPLETE_MARK).read_text())


# --- is the output context-sensitive? ------------------------------------------------------------

def probe_prompts(vocab_size: int, *, contexts: int = 3, length: int = 96, last_token: int = 500,
                  avoid: int = 3) -> list[list[int]]:
    """Prompts that end in the same token and differ in everything before it."""
    span = max(1, min(vocab_size, 2048) - avoid - 1)
    last = min(last_token, vocab_size - 1)
    return [[avoid + (97 * i + 389 * k + 11) % span for i in range(length - 1)] + [last] for k in range(contexts)]


@dataclass
class Sensitivity:
    """Greedy continuations of prompts with one last token and different earlier contexts."""

    outputs: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The output depends on more than the last token: not every continuation is the same."""
        ok = [tuple(o) for o in self.outputs if isinstance(o, (list, tuple))]
        return len(ok) == len(self.outputs) and len(set(ok)) > 1

    def explain(self) -> str:
        if self.passed:
            return f"context-sensitive: {len({tuple(o) for o in self.outputs})} distinct continuations of {len(self.outputs)}"
        failed = [o for o in self.outputs if not isinstance(o, (list, tuple))]
        if failed:
            return f"a probe request failed: {failed[0]}"
        return (f"last-token-only: {len(self.outputs)} prompts ending in the same token, different earlier "
                f"context, all continue with {self.outputs[0]}; equal tokens could not tell a wrong KV cache "
                "from the right one")


def context_sensitivity(generate: Generate, vocab_size: int, *, new_tokens: int = 4, **prompt_args) -> Sensitivity:
    """Run ``generate(prompt, new_tokens) -> token ids`` (or an error string) on ``probe_prompts``."""
    return Sensitivity([generate(p, new_tokens) for p in probe_prompts(vocab_size, **prompt_args)])


def last_token_only(generate: Generate) -> Generate:
    """The negative control: the same model shown only the last prompt token."""
    return lambda prompt, n: generate(list(prompt)[-1:], n)


def hf_greedy(checkpoint_dir: Path) -> Generate:
    """Greedy decoding with transformers (float32, CPU) on a checkpoint: the builder's own check."""
    import torch          # optional dependencies (vLLM's), slow to import
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, torch_dtype=torch.float32)
    model.eval()

    def generate(prompt: Sequence[int], n: int) -> list[int]:
        ids = torch.tensor([list(prompt)])
        out: list[int] = []
        with torch.no_grad():
            for _ in range(n):
                nxt = int(model(ids).logits[0, -1].argmax())
                out.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        return out

    return generate


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_disagg.checkpoints CONFIG CACHE_DIR``: build (or find) the checkpoint and
    print its directory; a config transformers cannot build exits 2 with the reason."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pytest_disagg.checkpoints", description=main.__doc__)
    ap.add_argument("config", help="a Hugging Face config.json or its directory")
    ap.add_argument("cache_dir")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    try:
        print(build_checkpoint(args.config, args.cache_dir, seed=args.seed))
    except CheckpointError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
