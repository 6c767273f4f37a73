"""Model configs the suite serves (with dummy weights, or a real tiny checkpoint built by
``pytest_disagg.checkpoints``), and the plain-attention KV size their shape implies.

The KV bytes per token that the self-check and the properties use come from vLLM itself
(``pytest_disagg.kvspec``: MLA latents, fp8 caches, sliding windows and hybrid layers are sized as
the engine sizes them). ``kv_bytes_per_token`` here is kept only as the cross-check for plain
attention, where both must agree, and as the fallback when vLLM cannot be asked and the formula
is known to apply (``formula_applies``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .shipped import FIXTURES_DIR

MODELS_DIR = FIXTURES_DIR / "models"
TOKENIZER_DIR = FIXTURES_DIR / "tokenizer"

DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "fp8": 1}


class ModelConfigError(ValueError):
    """A model name or path that does not lead to a usable config."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_path: Path
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    config_dtype: str
    config_sha256: str
    formula_applies: bool = True     # plain attention: no MLA latent, no sliding window, no hybrid layers

    def kv_bytes_per_token(self, dtype: str) -> int:
        """K and V, every layer, every KV head: 2 × layers × kv_heads × head_dim × bytes."""
        try:
            size = DTYPE_BYTES[dtype]
        except KeyError:
            raise ModelConfigError(f"unknown dtype {dtype!r}; known: {sorted(DTYPE_BYTES)}") from None
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * size

    def materialize(self, directory: Path) -> Path:
        """A directory vLLM can load: the config plus the fixtures' tokenizer.

        Kept separate from the config under fixtures/ so that one trained tokenizer serves every
        model shape and a user's config file works without a tokenizer of its own.
        """
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_bytes(self.config_path.read_bytes())
        src_dir = self.config_path.parent
        for name in ("tokenizer.json", "tokenizer_config.json"):
            src = src_dir / name if (src_dir / name).exists() else TOKENIZER_DIR / name
            dst = directory / name
            if not dst.exists():
                os.symlink(src, dst)
        return directory


def plain_attention(cfg: dict) -> bool:
    """Does 2 × layers × KV heads × head_dim × dtype describe this config's cache? Not for MLA
    (a latent of kv_lora_rank + qk_rope_head_dim), sliding windows or hybrid (Mamba/linear) layers."""
    if cfg.get("kv_lora_rank") or cfg.get("use_mla"):
        return False
    if cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
        return False
    kinds = set(cfg.get("layers_block_type") or []) | set(cfg.get("layer_types") or [])
    return kinds <= {"attention", "full_attention"}


def available_models() -> list[str]:
    return sorted(p.parent.name for p in MODELS_DIR.glob("*/config.json"))


def resolve_model(name_or_path: str) -> ModelSpec:
    """A name under fixtures/models/, or a path to a config.json or a directory holding one."""
    candidate = Path(name_or_path)
    if (MODELS_DIR / name_or_path / "config.json").is_file():
        config_path = MODELS_DIR / name_or_path / "config.json"
    elif candidate.is_dir() and (candidate / "config.json").is_file():
        config_path = candidate / "config.json"
    elif candidate.is_file():
        config_path = candidate
    else:
        raise ModelConfigError(
            f"no model config {name_or_path!r}: give a name from fixtures/models "
            f"({', '.join(available_models())}) or a path to a config.json"
        )
    raw = config_path.read_bytes()
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{config_path}: not valid JSON ({exc})") from None
    try:
        heads = int(cfg["num_attention_heads"])
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
        return ModelSpec(
            name=config_path.parent.name,
            config_path=config_path.resolve(),
            num_layers=int(cfg["num_hidden_layers"]),
            num_kv_heads=int(cfg.get("num_key_value_heads", heads)),
            head_dim=head_dim,
            vocab_size=int(cfg["vocab_size"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            config_dtype=str(cfg.get("torch_dtype", "bfloat16")),
            config_sha256=hashlib.sha256(raw).hexdigest(),
            formula_applies=plain_attention(cfg),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"{config_path}: missing or bad field {exc}") from None
