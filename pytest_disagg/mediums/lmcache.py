"""LMCache configuration files generated from a medium definition.

LMCache reads its settings from a YAML file named by ``LMCACHE_CONFIG_FILE``; the suite writes one
per role into the deployment's scratch directory so that two deployments never share a cache path
or a port by accident.
"""
from __future__ import annotations

from typing import Any

from .base import MediumContext, Role, RoleSetup

CHUNK_SIZE = 256


def _yaml(data: dict[str, Any]) -> str:
    """A flat YAML mapping (LMCache's config is flat apart from ``extra_config``)."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_scalar(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace('"', '\\"') + '"'


def _setup(role: Role, ctx: MediumContext, config: dict[str, Any], kv_role: str) -> RoleSetup:
    name = f"lmcache-{role}.yaml"
    return RoleSetup(
        kv_transfer_config={"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role},
        env={"LMCACHE_CONFIG_FILE": str(ctx.workdir / name), "LMCACHE_USE_EXPERIMENTAL": "True"},
        files={name: _yaml(config)},
    )


def cpu_with_lookup(role: Role, ctx: MediumContext) -> RoleSetup:
    """The study's dis-cpu: KV offloaded to host memory, a Redis server as the shared lookup.

    Prefill stores each chunk in its local CPU tier and publishes it through the Redis server that
    the deployment starts; decode finds the chunks there and fetches them instead of recomputing.
    """
    redis = ctx.services["redis"]
    config = {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": True,
        "max_local_cpu_size": 8,
        "remote_url": f"redis://{redis}",
        "remote_serde": "naive",
        "save_decode_cache": False,
    }
    return _setup(role, ctx, config, "kv_producer" if role == "prefill" else "kv_consumer")


def disk(role: Role, ctx: MediumContext) -> RoleSetup:
    """The study's dis-disk: LMCache's file-system backend on a per-deployment directory.

    The page cache is bypassed (O_DIRECT) so that reads measure the device, as the study did.
    """
    path = ctx.workdir / "lmcache-fs"
    config = {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": False,
        "max_local_cpu_size": 2,
        "remote_url": f"fs://{path}/",
        "remote_serde": "naive",
        "extra_config": {"use_odirect": True},
    }
    return _setup(role, ctx, config, "kv_producer" if role == "prefill" else "kv_consumer")


def pd_over_nixl(role: Role, ctx: MediumContext) -> RoleSetup:
    """The study's dis-gpu: LMCache's PD mode, prefill pushing KV to decode's GPU over NIXL."""
    sender = role == "prefill"
    config = {
        "chunk_size": CHUNK_SIZE,
        "local_cpu": False,
        "max_local_cpu_size": 0,
        "enable_pd": True,
        "transfer_channel": "nixl",
        "pd_role": "sender" if sender else "receiver",
        "pd_buffer_size": 2 * 1024**3,
        "pd_buffer_device": "cuda",
        "pd_peer_host": "127.0.0.1",
        "pd_peer_init_port": ctx.peer_ports.get("pd_init", ctx.side_channel_port),
        "pd_peer_alloc_port": ctx.peer_ports.get("pd_alloc", ctx.side_channel_port + 1),
        "pd_skip_proxy_notification": True,
    }
    return _setup(role, ctx, config, "kv_producer" if sender else "kv_consumer")
