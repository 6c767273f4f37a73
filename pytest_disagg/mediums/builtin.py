"""The built-in transfer mediums: the one place to add a medium.

Each entry says which vLLM connector carries the KV cache, what the medium needs from the machine,
how the proxy hands a request from prefill to decode, and how the self-check proves the KV moved.
"""
from __future__ import annotations

from ..lmcache_wire import PD_PORT_NAMES
from . import lmcache
from .base import Medium, MediumContext, Role, RoleSetup


def _producer_consumer(role: Role) -> str:
    return "kv_producer" if role == "prefill" else "kv_consumer"


def _nixl(buffer_device: str):
    def setup(role: Role, ctx: MediumContext) -> RoleSetup:
        return RoleSetup(
            kv_transfer_config={
                "kv_connector": "NixlConnector",
                "kv_role": _producer_consumer(role),
                "kv_buffer_device": buffer_device,
            },
            env={"VLLM_NIXL_SIDE_CHANNEL_PORT": str(ctx.side_channel_port)},
        )

    return setup


def _example_storage(role: Role, ctx: MediumContext) -> RoleSetup:
    path = ctx.workdir / "kv-store"
    path.mkdir(parents=True, exist_ok=True)
    return RoleSetup(
        kv_transfer_config={
            "kv_connector": "ExampleConnector",
            "kv_role": _producer_consumer(role),
            "kv_connector_extra_config": {"shared_storage_path": str(path)},
        }
    )


def _p2p_nccl(role: Role, ctx: MediumContext) -> RoleSetup:
    return RoleSetup(
        kv_transfer_config={
            "kv_connector": "P2pNcclConnector",
            "kv_role": _producer_consumer(role),
            "kv_port": str(ctx.side_channel_port),
            "kv_connector_extra_config": {"proxy_ip": "127.0.0.1", "http_port": ctx.side_channel_port + 1},
        }
    )


def _mooncake(role: Role, ctx: MediumContext) -> RoleSetup:
    return RoleSetup(
        kv_transfer_config={"kv_connector": "MooncakeConnector", "kv_role": _producer_consumer(role)},
        env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(ctx.side_channel_port)},
    )


BUILTIN_MEDIUMS: tuple[Medium, ...] = (
    Medium(
        name="colocated",
        summary="one vLLM server does prefill and decode (the baseline)",
        handoff="none",
        paper_name="co-1gpu",
    ),
    Medium(
        name="colocated-dp",
        summary="two full colocated engines behind the proxy, requests split between them",
        handoff="none",
        replicas=2,
        paper_name="co-2gpus",
    ),
    Medium(
        name="nixl-cpu",
        summary="NixlConnector, KV staged in a host buffer",
        handoff="kv_params",
        connector="NixlConnector",
        needs_modules=("nixl",),
        evidence="nixl_bytes",
        role_setup=_nixl("cpu"),
    ),
    Medium(
        name="nixl-gpu",
        summary="NixlConnector, KV read GPU to GPU",
        handoff="kv_params",
        connector="NixlConnector",
        needs_cuda=True,
        needs_modules=("nixl",),
        evidence="nixl_bytes",
        role_setup=_nixl("cuda"),
    ),
    Medium(
        name="disk",
        summary="ExampleConnector: prefill writes KV files, decode reads them",
        handoff="storage",
        connector="ExampleConnector",
        evidence="external_hits",
        role_setup=_example_storage,
    ),
    Medium(
        name="lmcache-cpu",
        summary="LMCacheConnectorV1, KV offloaded to host memory and shared through a Redis server",
        handoff="storage",
        connector="LMCacheConnectorV1",
        needs_cuda=True,
        needs_modules=("lmcache", "redis"),
        needs_binaries=("redis-server",),
        services=("redis",),
        evidence="external_hits",
        role_setup=lmcache.cpu_with_lookup,
        proxy_args=lmcache.cpu_store_barrier,
        paper_name="dis-cpu",
    ),
    Medium(
        name="lmcache-disk",
        summary="LMCacheConnectorV1, fs connector on a per-deployment directory with O_DIRECT",
        handoff="storage",
        connector="LMCacheConnectorV1",
        needs_cuda=True,
        needs_modules=("lmcache", "aiofiles"),   # the fs connector imports aiofiles
        evidence="external_hits",
        role_setup=lmcache.disk,
        proxy_args=lmcache.disk_store_barrier,
        paper_name="dis-disk",
    ),
    Medium(
        name="lmcache-nixl",
        summary="LMCacheConnectorV1 in PD mode, KV pushed GPU to GPU over NIXL",
        # The proxy sends prefill a disagg_spec and waits for LMCache's "KV in place" message
        # before decode (see lmcache.pd_config); vLLM's kv_params exchange is not used.
        handoff="lmcache_pd",
        connector="LMCacheConnectorV1",
        needs_cuda=True,
        needs_modules=("lmcache", "nixl"),
        evidence="external_hits",
        role_setup=lmcache.pd_over_nixl,
        paper_name="dis-gpu",
        ports=PD_PORT_NAMES,
    ),
    Medium(
        name="p2p-nccl",
        summary="P2pNcclConnector, KV sent over NCCL",
        handoff="kv_params",
        connector="P2pNcclConnector",
        needs_cuda=True,
        evidence="external_hits",
        role_setup=_p2p_nccl,
    ),
    Medium(
        name="mooncake",
        summary="MooncakeConnector over the Mooncake transfer engine",
        handoff="kv_params",
        connector="MooncakeConnector",
        needs_cuda=True,
        needs_modules=("mooncake",),
        evidence="external_hits",
        role_setup=_mooncake,
    ),
)
