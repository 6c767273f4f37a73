"""LMCache configuration files for the seed study's three LMCache set-ups, generated per role.

Written against LMCache 0.5.2 (the release that loads beside vLLM 0.26 / torch 2.11 on the lent
GPU) and read from its source: ``lmcache/v1/config.py`` (``_CONFIG_DEFINITIONS``),
``lmcache/v1/storage_backend/__init__.py`` (which backends a config creates),
``.../connector/fs_connector.py`` and ``redis_adapter.py`` (remote tiers),
``.../pd_backend_async.py`` (PD mode) and ``lmcache/integration/vllm/vllm_v1_adapter.py``
(what vLLM's ``LMCacheConnectorV1`` does with a request's ``kv_transfer_params``).

Why generated and checked here: LMCache only *logs* an unknown key, a remote tier that fails to
connect, or a store it had to drop, and then serves by recomputing the prompt. A wrong key costs
no error, only a measurement of the wrong thing; so every key written here is checked against the
0.5.2 definitions (``KEY_TYPES``) and the traps found in the source are avoided on purpose:

- chunk keys come from Python's ``hash`` unless ``PYTHONHASHSEED`` is fixed, so prefill and
  decode would never find each other's chunks: every role gets ``PYTHONHASHSEED=0``;
- the legacy ``fs://`` URL must carry a host and port (``fs:///path`` fails an assertion that is
  swallowed), so the fs tier is named as a remote storage plugin with an explicit base path;
- O_DIRECT in the fs connector is silently off while ``save_chunk_meta`` is on (its default);
- the fs connector reads ``statvfs`` of its directory before creating it: it must exist;
- a store that finds the CPU staging buffer full is dropped unless ``force_store_wait`` is set.

One YAML file per role lands in the deployment's scratch directory (``LMCACHE_CONFIG_FILE``), so
two deployments never share a cache directory or a port by accident.

Seen on the lent H100 (vLLM 0.26, LMCache 0.5.2, both servers on one GPU): PD mode with these
files moved 16,000-token prompts into decode's buffer (15,999 tokens loaded, 1 computed), the
notification arriving before or within 70 ms of prefill's answer; the fs tier wrote 112 KiB per
token with O_DIRECT and decode loaded 15,999 of 16,000 tokens from it, but only once the write had
finished: remote tiers store asynchronously, so a decode request sent the moment prefill answers
finds nothing and recomputes (0 of 16,000 tokens found). So the proxy of lmcache-disk and
lmcache-cpu holds decode until prefill's chunks are in the store (``handoffs.storebarrier``).
"""
from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any, Mapping

from ..lmcache_wire import HOST, LMCacheConfigError, PdPorts
from .base import MediumContext, Role, RoleSetup

LMCACHE_VERSION = "0.5.2"
CHUNK_SIZE = 256                  # LMCache's default, and what the lent-GPU trial used
CPU_GIB = 8.0                     # CPU tier / staging buffer per server, GB (LMCache's unit)
PD_BUFFER_BYTES = 4 * 1024**3     # PD transfer buffer on each GPU
NIXL_BACKENDS = ("UCX",)
UCX_TLS = "cuda_ipc,cuda_copy,tcp"  # the study's cuda_ipc transport; LMCache's PD example uses this

# Every top-level key this module writes, with the type LMCache 0.5.2's ``_CONFIG_DEFINITIONS``
# gives it (bool is checked before int: in Python a bool is an int).
KEY_TYPES: dict[str, tuple[type, ...]] = {
    "chunk_size": (int,),
    "local_cpu": (bool,),
    "max_local_cpu_size": (int, float),
    "save_unfull_chunk": (bool,),
    "remote_storage_plugins": (list,),
    "extra_config": (dict,),
    "enable_pd": (bool,),
    "pd_role": (str,),
    "pd_buffer_size": (int,),
    "pd_buffer_device": (str,),
    "pd_peer_host": (str,),
    "pd_peer_init_port": (list,),
    "pd_peer_alloc_port": (list,),
    "pd_proxy_host": (str,),
    "pd_proxy_port": (int,),
    "pd_backend_mode": (str,),
    "transfer_channel": (str,),
    "nixl_backends": (list,),
}
# ``extra_config`` keys this module writes, each read in LMCache 0.5.2 where noted.
EXTRA_KEYS = frozenset({
    "remote_storage_plugin.redis.redis_url",   # connector/redis_adapter.py
    "remote_storage_plugin.fs.base_path",      # connector/fs_connector.py
    "fs_connector_use_odirect",                # connector/fs_connector.py
    "save_chunk_meta",                         # connector/base_connector.py
    "force_store_wait",                        # v1/cache_engine.py
})


def validate(config: Mapping[str, Any], where: str = "LMCache config") -> None:
    """Raise if a key is not one LMCache 0.5.2 reads, or has the wrong type."""
    for key, value in config.items():
        if key not in KEY_TYPES:
            raise LMCacheConfigError(f"{where}: key {key!r} is not read by LMCache {LMCACHE_VERSION}")
        types = KEY_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise LMCacheConfigError(f"{where}: {key}={value!r} must be {'/'.join(t.__name__ for t in types)}")
    for key in (config.get("extra_config") or {}):
        if key not in EXTRA_KEYS:
            raise LMCacheConfigError(f"{where}: extra_config key {key!r} is not one this suite knows LMCache reads")
    for key in ("pd_peer_init_port", "pd_peer_alloc_port"):
        # One port per tensor-parallel rank; LMCache indexes the list by rank.
        if key in config and not all(isinstance(p, int) and not isinstance(p, bool) for p in config[key]):
            raise LMCacheConfigError(f"{where}: {key} must be a list of ints, got {config[key]!r}")


def render(config: Mapping[str, Any]) -> str:
    """The file LMCache loads with ``yaml.safe_load``: JSON, which is YAML, so nothing needs quoting."""
    return json.dumps(dict(config), indent=2, sort_keys=True) + "\n"


def _kv_role(role: Role) -> str:
    if role == "prefill":
        return "kv_producer"
    if role == "decode":
        return "kv_consumer"
    raise LMCacheConfigError(f"LMCache mediums are disaggregated: no config for role {role!r}")


# --- the three configurations, as plain data ------------------------------------------------
def cpu_config(role: Role, redis_addr: str, cpu_gib: float = CPU_GIB) -> dict[str, Any]:
    """dis-cpu: KV offloaded to host memory, published through the deployment's Redis server.

    Prefill keeps LMCache's CPU tier (the study's "CPU offload") and writes every chunk to Redis;
    decode has no CPU tier of its own (its buffer only stages reads), so every chunk it uses is
    looked up in, and fetched from, Redis.
    """
    _kv_role(role)
    if ":" not in redis_addr:
        raise LMCacheConfigError(f"redis address must be host:port, got {redis_addr!r}")
    return {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": role == "prefill",
        "max_local_cpu_size": cpu_gib,
        "save_unfull_chunk": True,        # the prompt's last partial chunk moves too
        "remote_storage_plugins": ["redis"],
        "extra_config": {
            "remote_storage_plugin.redis.redis_url": f"redis://{redis_addr}",
            "force_store_wait": True,
        },
    }


def disk_config(role: Role, base_path: Path, cpu_gib: float = CPU_GIB) -> dict[str, Any]:
    """dis-disk: LMCache's fs connector on one directory, with O_DIRECT (page cache bypassed).

    Neither role keeps a CPU tier (the CPU buffer only stages), so KV goes GPU → file → GPU.
    O_DIRECT needs ``save_chunk_meta`` off and chunk sizes that are multiples of the file system's
    block size: a token of the 3B-shaped model is 112 KiB, so every chunk is.
    """
    _kv_role(role)
    return {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": False,
        "max_local_cpu_size": cpu_gib,
        "save_unfull_chunk": True,
        "remote_storage_plugins": ["fs"],
        "extra_config": {
            "remote_storage_plugin.fs.base_path": str(base_path),
            "fs_connector_use_odirect": True,
            "save_chunk_meta": False,
            "force_store_wait": True,
        },
    }


def pd_config(role: Role, ports: PdPorts, buffer_bytes: int = PD_BUFFER_BYTES) -> dict[str, Any]:
    """dis-gpu: LMCache's PD mode, prefill pushing KV into decode's GPU buffer over NIXL.

    The receiver (decode) binds ``pd_peer_init_port`` and ``pd_peer_alloc_port`` (lists: one port
    per tensor-parallel rank). The sender (prefill) learns them per request from the
    ``disagg_spec`` in ``kv_transfer_params`` and, once a request's KV is in place, pushes a
    notification to ``pd_proxy_host:pd_proxy_port`` — which the proxy must consume.
    """
    _kv_role(role)
    config: dict[str, Any] = {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": False,
        "max_local_cpu_size": 0,
        "enable_pd": True,
        "transfer_channel": "nixl",
        "nixl_backends": list(NIXL_BACKENDS),
        "pd_backend_mode": "async",
        "pd_buffer_size": buffer_bytes,
        "pd_buffer_device": "cuda",
        "save_unfull_chunk": True,        # PD forces it on anyway; written so the file says so
    }
    if role == "prefill":
        config.update(pd_role="sender", pd_proxy_host=HOST, pd_proxy_port=ports.notify)
    else:
        config.update(pd_role="receiver", pd_peer_host=HOST,
                      pd_peer_init_port=[ports.init], pd_peer_alloc_port=[ports.alloc])
    return config


# --- role builders (the medium's ``role_setup``) ---------------------------------------------
def _setup(role: Role, ctx: MediumContext, config: dict[str, Any], env: Mapping[str, str] | None = None) -> RoleSetup:
    name = f"lmcache-{role}.yaml"
    validate(config, where=str(ctx.workdir / name))
    return RoleSetup(
        kv_transfer_config={"kv_connector": "LMCacheConnectorV1", "kv_role": _kv_role(role)},
        env={
            "LMCACHE_CONFIG_FILE": str(ctx.workdir / name),
            "PYTHONHASHSEED": "0",          # same chunk keys in prefill and decode
            "LMCACHE_TRACK_USAGE": "false",
            **dict(env or {}),
        },
        files={name: render(config)},
    )


def cpu_with_lookup(role: Role, ctx: MediumContext) -> RoleSetup:
    """Role setup of ``lmcache-cpu``; the deployment starts Redis and passes its address."""
    try:
        redis = ctx.services["redis"]
    except KeyError:
        raise LMCacheConfigError("lmcache-cpu needs the deployment's redis service (services=('redis',))") from None
    return _setup(role, ctx, cpu_config(role, redis))


def odirect_problem(directory: Path) -> str | None:
    """Why O_DIRECT writes and reads fail in ``directory`` (None when they work).

    LMCache's fs connector only logs a failed O_DIRECT write and the decode server then silently
    recomputes, so the medium checks up front (tmpfs on older kernels, some overlay file systems).
    """
    probe = directory / ".odirect-probe"
    block = mmap.mmap(-1, 4096)          # page-aligned, as O_DIRECT requires
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
        try:
            os.write(fd, block)
        finally:
            os.close(fd)
        fd = os.open(probe, os.O_RDONLY | os.O_DIRECT)
        try:
            os.readv(fd, [block])
        finally:
            os.close(fd)
    except OSError as exc:
        return f"O_DIRECT I/O fails in {directory}: {exc}"
    finally:
        block.close()
        probe.unlink(missing_ok=True)
    return None


def disk(role: Role, ctx: MediumContext) -> RoleSetup:
    """Role setup of ``lmcache-disk``; both roles share one directory of this deployment."""
    path = ctx.workdir / "lmcache-fs"
    path.mkdir(parents=True, exist_ok=True)   # the connector stats it before creating it
    problem = odirect_problem(path)
    if problem:
        raise LMCacheConfigError(f"lmcache-disk bypasses the page cache as the study did: {problem}")
    return _setup(role, ctx, disk_config(role, path))


def disk_store_barrier(ctx: MediumContext) -> list[str]:
    """The proxy counts the fs connector's chunk files: decode waits for prefill's writes."""
    return ["--store-barrier", f"fs:{ctx.workdir / 'lmcache-fs'}", "--store-chunk-tokens", str(CHUNK_SIZE)]


def cpu_store_barrier(ctx: MediumContext) -> list[str]:
    """The proxy counts the chunks in the deployment's Redis: decode waits for prefill's puts."""
    try:
        redis = ctx.services["redis"]
    except KeyError:
        raise LMCacheConfigError("lmcache-cpu needs the deployment's redis service (services=('redis',))") from None
    return ["--store-barrier", f"redis:{redis}", "--store-chunk-tokens", str(CHUNK_SIZE)]


def pd_over_nixl(role: Role, ctx: MediumContext) -> RoleSetup:
    """Role setup of ``lmcache-nixl``; ``UCX_TLS`` from the environment wins over the study's."""
    return _setup(role, ctx, pd_config(role, PdPorts.from_context(ctx)),
                  env={"UCX_TLS": os.environ.get("UCX_TLS", UCX_TLS)})
