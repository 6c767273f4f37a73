"""KV bytes per token as the installed vLLM sizes its cache, not as a formula guesses it.

Why: the self-check's proof that the KV moved compares the NIXL bytes a decode server received
with the bytes per token of the model's KV cache. ``2 × layers × KV heads × head_dim × dtype``
holds for plain attention only: MLA (DeepSeek-V2/V3, Kimi) caches one latent of
``kv_lora_rank + qk_rope_head_dim`` per layer, ``--kv-cache-dtype fp8`` halves or quarters the
bytes, hybrid models keep Mamba state that is not per token, and backends may pad pages. So we ask
vLLM itself: a subprocess run by the servers' interpreter builds vLLM's ``VllmConfig`` for the
model directory, dtype, KV-cache dtype and block size the servers get, instantiates the model on
PyTorch's ``meta`` device (no weights, no memory), and asks every attention layer for its
``get_kv_cache_spec`` -- the very objects the engine sizes its cache pages from. Bytes per token
of a layer = its ``page_size_bytes / block_size``; the deployment's figure is their sum.

Where the model cannot be instantiated here (e.g. an MLA model on the CPU build, which has no MLA
backend) the probe falls back to vLLM's ``ModelConfig`` (``use_mla``, ``get_head_size``,
``get_num_kv_heads``, attention layer count) and vLLM's own spec classes' ``page_size_bytes``; the
result says which (``source``: ``layers`` or ``model-config``).

Results are cached on disk by everything they depend on. ``formula_bytes_per_token`` (models.py's
formula) is kept as a cross-check for plain attention: ``cross_check`` says whether they agree.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .children import processes
from .versions import package_version

KV_CACHE_DTYPES = ("auto", "float32", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
PROBE_TIMEOUT_S = 900.0     # importing vLLM took over 2 minutes on the shared CI box under load


class KVSpecError(RuntimeError):
    """vLLM could not size the KV cache for this configuration (the message says why)."""


@dataclass(frozen=True)
class LayerKV:
    name: str
    kind: str                      # vLLM's spec class, e.g. FullAttentionSpec, MLAAttentionSpec, MambaSpec
    bytes_per_token: float | None  # None: state that is not per token (Mamba)
    page_size_bytes: int
    block_size: int
    num_kv_heads: int | None = None
    head_size: int | None = None
    dtype: str | None = None
    sliding_window: int | None = None


@dataclass(frozen=True)
class KVSpec:
    """What vLLM says one token of KV cache costs, per layer and in total."""

    bytes_per_token: int
    layers: tuple[LayerKV, ...]
    source: str                    # "layers" (the model's attention layers) or "model-config"
    vllm_version: str
    use_mla: bool
    cache_dtype: str
    notes: tuple[str, ...] = ()
    probe_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def per_token_exact(self) -> bool:
        """Every layer's cache is per token (no Mamba state): bytes moved = tokens × bytes_per_token."""
        return all(layer.bytes_per_token is not None for layer in self.layers)

    @property
    def sliding_windows(self) -> dict[int, int]:
        """Window -> number of layers with it."""
        out: dict[int, int] = {}
        for layer in self.layers:
            if layer.sliding_window:
                out[layer.sliding_window] = out.get(layer.sliding_window, 0) + 1
        return out

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for layer in self.layers:
            kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
        parts = ", ".join(f"{n} × {k}" for k, n in kinds.items())
        return (f"{self.bytes_per_token} B/token from vLLM {self.vllm_version} ({parts}; cache dtype "
                f"{self.cache_dtype}; {'MLA' if self.use_mla else 'no MLA'}; from {self.source})")

    def to_json(self) -> dict:
        return {"bytes_per_token": self.bytes_per_token, "source": self.source, "vllm_version": self.vllm_version,
                "use_mla": self.use_mla, "cache_dtype": self.cache_dtype, "notes": list(self.notes),
                "probe_s": self.probe_s, "layers": [layer.__dict__ for layer in self.layers], **self.extra}

    @classmethod
    def from_json(cls, data: dict) -> "KVSpec":
        layers = tuple(LayerKV(**layer) for layer in data["layers"])
        return cls(bytes_per_token=int(data["bytes_per_token"]), layers=layers, source=data["source"],
                   vllm_version=data["vllm_version"], use_mla=bool(data["use_mla"]),
                   cache_dtype=data["cache_dtype"], notes=tuple(data.get("notes", ())),
                   probe_s=float(data.get("probe_s", 0.0)))


def validate_kv_cache_dtype(value: str | None, option: str = "--disagg-kv-cache-dtype") -> str:
    value = (value or "auto").strip()
    if value not in KV_CACHE_DTYPES:
        raise ValueError(f"{option}={value!r}: allowed values are {', '.join(KV_CACHE_DTYPES)}")
    return value


def probe_key(model_dir: Path, dtype: str, kv_cache_dtype: str, block_size: int | None, device: str,
              python: str) -> str:
    config = (Path(model_dir) / "config.json").read_bytes()
    blob = json.dumps({"config": hashlib.sha256(config).hexdigest(), "dtype": dtype, "kv": kv_cache_dtype,
                       "block": block_size, "device": device, "python": python, "probe": _PROBE_VERSION,
                       "vllm": package_version("vllm")},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


_PROBE_VERSION = 1


class KVSpecProbe:
    """The probe as a running subprocess (one vLLM import for any number of configurations), so
    that a deployment can start its servers meanwhile. ``jobs``: dicts with ``model_dir``,
    ``dtype``, and optionally ``kv_cache_dtype``, ``block_size``, ``max_model_len``."""

    def __init__(self, jobs: list[dict], *, device: str = "cpu", cache_dir: Path | None = None,
                 python: str = sys.executable, env: dict | None = None):
        self.jobs = [{"kv_cache_dtype": "auto", "block_size": None, "max_model_len": 2048, **j} for j in jobs]
        for j in self.jobs:
            j["kv_cache_dtype"] = validate_kv_cache_dtype(j["kv_cache_dtype"], "kv_cache_dtype")
        self.cache_files = [None if cache_dir is None else Path(cache_dir) / (
            "kvspec-" + probe_key(j["model_dir"], j["dtype"], j["kv_cache_dtype"], j["block_size"], device,
                                  python)[:24] + ".json") for j in self.jobs]
        self.todo = [i for i, f in enumerate(self.cache_files) if f is None or not f.is_file()]
        self.proc = None
        self.t0 = time.monotonic()
        if not self.todo:
            return
        args = [{"model": str(self.jobs[i]["model_dir"]), **{k: self.jobs[i][k] for k in
                 ("dtype", "kv_cache_dtype", "block_size", "max_model_len")}} for i in self.todo]
        penv = dict(os.environ if env is None else env)
        penv.update({"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "MASTER_ADDR": "127.0.0.1"})
        if device == "cpu":
            penv.pop("CUDA_VISIBLE_DEVICES", None)
        # Under a supervisor: a pytest killed with SIGKILL must not leave the probe behind.
        self.proc = processes.popen([python, "-c", _PROBE_SCRIPT, json.dumps(args)], env=penv)

    def results(self, timeout_s: float = PROBE_TIMEOUT_S) -> list[KVSpec]:
        """One KVSpec per job, in order; raises KVSpecError naming the job vLLM could not size."""
        fresh: dict[int, dict] = {}
        if self.proc is not None:
            try:
                out, err = self.proc.communicate(timeout=max(1.0, timeout_s - (time.monotonic() - self.t0)))
            except subprocess.TimeoutExpired:
                processes.end_popen(self.proc)
                raise KVSpecError(f"vLLM's KV-cache sizing probe took over {timeout_s:.0f} s") from None
            answers = [json.loads(ln[len(_MARK):]) for ln in out.splitlines() if ln.startswith(_MARK)]
            if self.proc.returncode != 0 or len(answers) != len(self.todo):
                tail = "\n".join(err.strip().splitlines()[-15:])
                raise KVSpecError(f"vLLM's KV-cache sizing probe failed (exit {self.proc.returncode}, "
                                  f"{len(answers)} of {len(self.todo)} answers):\n{tail}")
            elapsed = round(time.monotonic() - self.t0, 1)
            for i, data in zip(self.todo, answers):
                if "error" in data:
                    j = self.jobs[i]
                    raise KVSpecError(f"vLLM cannot size the KV cache of {j['model_dir']} (dtype {j['dtype']}, "
                                      f"kv cache dtype {j['kv_cache_dtype']}): {data['error']}")
                data["probe_s"] = elapsed
                fresh[i] = data
                if self.cache_files[i] is not None:
                    self.cache_files[i].parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.cache_files[i].with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(data, indent=2))
                    tmp.replace(self.cache_files[i])
        return [KVSpec.from_json(fresh[i] if i in fresh else json.loads(self.cache_files[i].read_text()))
                for i in range(len(self.jobs))]

    def cancel(self) -> None:
        if self.proc is not None:
            processes.end_popen(self.proc)


def vllm_kv_spec(model_dir: Path, *, dtype: str, kv_cache_dtype: str = "auto", block_size: int | None = None,
                 max_model_len: int = 2048, **probe_args) -> KVSpec:
    """Run the probe for one configuration and wait for it."""
    job = {"model_dir": model_dir, "dtype": dtype, "kv_cache_dtype": kv_cache_dtype, "block_size": block_size,
           "max_model_len": max_model_len}
    return KVSpecProbe([job], **probe_args).results()[0]


def cross_check(spec: KVSpec, formula_bytes_per_token: int) -> str | None:
    """For plain attention (no MLA, full-precision cache, per-token layers) vLLM's figure must be
    the formula's; a disagreement is returned as a sentence, None when they agree or when the
    formula does not apply."""
    plain = (not spec.use_mla and spec.per_token_exact and not spec.cache_dtype.startswith("fp8")
             and all(layer.kind in ("FullAttentionSpec", "SlidingWindowSpec") for layer in spec.layers))
    if plain and spec.bytes_per_token != formula_bytes_per_token:
        return (f"vLLM sizes {spec.bytes_per_token} B/token, the formula 2 × layers × KV heads × head_dim × "
                f"dtype gives {formula_bytes_per_token}: {spec.describe()}")
    return None


_MARK = "PYTEST_DISAGG_KVSPEC "

# Runs under the servers' interpreter. Kept to vLLM's public-ish configuration API and the layers'
# own get_kv_cache_spec, with fallbacks for the versions the suite meets (0.26 on GPU, 0.31/0.32 CPU).
_PROBE_SCRIPT = r'''
import json, os, socket, sys
jobs = json.loads(sys.argv[1])
import torch
import vllm
from vllm.engine.arg_utils import EngineArgs

def name_of(dtype):
    return str(dtype).replace("torch.", "")

def layer_row(name, spec):
    block = int(getattr(spec, "block_size", 0) or 0)
    page = int(spec.page_size_bytes)
    kind = type(spec).__name__
    per_token = None if ("Mamba" in kind or not block) else page / block
    return {"name": name, "kind": kind, "bytes_per_token": per_token, "page_size_bytes": page, "block_size": block,
            "num_kv_heads": getattr(spec, "num_kv_heads", None), "head_size": getattr(spec, "head_size", None),
            "dtype": name_of(getattr(spec, "dtype", "")) or None, "sliding_window": getattr(spec, "sliding_window", None)}

distributed = []

def from_layers(vc):
    from vllm.config import set_current_vllm_config
    from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.distributed.parallel_state import destroy_model_parallel
    from vllm.model_executor.model_loader.utils import initialize_model
    rows = []
    with set_current_vllm_config(vc):
        if not distributed:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                         distributed_init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
            distributed.append(True)
        else:   # the groups depend on the config (an expert-parallel group only for MoE models)
            destroy_model_parallel()
        ensure_model_parallel_initialized(1, 1)
        with torch.device("meta"):
            initialize_model(vllm_config=vc)
        for name, layer in vc.compilation_config.static_forward_context.items():
            get = getattr(layer, "get_kv_cache_spec", None)
            if get is None or getattr(layer, "kv_sharing_target_layer_name", None):
                continue
            spec = get(vc)
            if spec is not None:
                rows.append(layer_row(name, spec))
    if not rows:
        raise RuntimeError("the model registered no layer with a KV cache spec")
    return rows

def from_model_config(vc):
    from vllm.utils.torch_utils import kv_cache_dtype_str_to_dtype
    from vllm.v1 import kv_cache_interface as kvi
    mc, pc = vc.model_config, vc.parallel_config
    dtype = kv_cache_dtype_str_to_dtype(vc.cache_config.cache_dtype, mc)
    n = mc.get_num_layers_by_block_type(pc, "attention")
    block = vc.cache_config.block_size
    if mc.use_mla:
        spec = kvi.MLAAttentionSpec(block_size=block, num_kv_heads=1, head_size=mc.get_head_size(), dtype=dtype,
                                    cache_dtype_str=vc.cache_config.cache_dtype)
    else:
        spec = kvi.FullAttentionSpec(block_size=block, num_kv_heads=mc.get_num_kv_heads(pc),
                                     head_size=mc.get_head_size(), dtype=dtype)
    rows = [layer_row(f"attention.{i}", spec) for i in range(n)]
    if mc.is_hybrid:
        rows.append({"name": "non-attention", "kind": "MambaSpec", "bytes_per_token": None, "page_size_bytes": 0,
                     "block_size": 0})
    return rows

for job in jobs:
    try:
        kw = dict(model=job["model"], dtype=job["dtype"], load_format="dummy", enforce_eager=True,
                  max_model_len=job["max_model_len"], kv_cache_dtype=job["kv_cache_dtype"])
        if job["block_size"]:
            kw["block_size"] = job["block_size"]
        vc = EngineArgs(**kw).create_engine_config()
        notes, source = [], "layers"
        try:
            rows = from_layers(vc)
        except Exception as exc:
            source = "model-config"
            notes.append(f"model not instantiated on meta ({type(exc).__name__}: {str(exc)[:300]}); "
                         "sized from ModelConfig")
            rows = from_model_config(vc)
            if vc.model_config.is_hybrid:
                notes.append("hybrid model: the non-attention layers' state is not counted")
        total = sum(r["bytes_per_token"] or 0 for r in rows)
        answer = {"bytes_per_token": int(round(total)), "layers": rows, "source": source,
                  "vllm_version": vllm.__version__, "use_mla": bool(vc.model_config.use_mla),
                  "cache_dtype": str(vc.cache_config.cache_dtype), "notes": notes}
    except Exception as exc:
        answer = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print("PYTEST_DISAGG_KVSPEC " + json.dumps(answer), flush=True)
os._exit(0)
'''
