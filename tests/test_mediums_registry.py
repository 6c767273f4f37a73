"""The medium registry and the availability rules (no vLLM needed: InstallInfo is data)."""
from __future__ import annotations

import pytest

from pytest_disagg.mediums import InstallInfo, Medium, MediumRegistry, UnknownMediumError
from pytest_disagg.mediums.base import MediumContext


def install(connectors=("NixlConnector", "ExampleConnector", "LMCacheConnectorV1"), cuda=0, **mods):
    return InstallInfo(vllm_version="0.32.0", connectors=frozenset(connectors), cuda_devices=cuda,
                       modules={"nixl": True, **mods}, binaries={})


def test_builtins_cover_the_issue_list():
    names = MediumRegistry().names()
    for name in ("colocated", "nixl-cpu", "nixl-gpu", "disk", "lmcache-cpu", "lmcache-disk", "p2p-nccl", "mooncake"):
        assert name in names


def test_unknown_medium_lists_known():
    with pytest.raises(UnknownMediumError, match="known: colocated"):
        MediumRegistry().get("pigeon")


def test_register_twice_needs_replace():
    reg = MediumRegistry()
    m = Medium(name="mine", summary="x", handoff="none")
    reg.register(m)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(m)
    reg.register(m, replace=True)
    assert reg.names()[-1] == "mine"


def test_availability_reasons():
    reg = MediumRegistry()
    info = install()
    assert info.missing_for(reg.get("nixl-cpu"), "cpu") == []
    assert info.missing_for(reg.get("colocated"), "cpu") == []
    assert any("needs CUDA (no GPU visible" in r for r in info.missing_for(reg.get("nixl-gpu"), "cpu"))
    p2p = info.missing_for(reg.get("p2p-nccl"), "cuda")
    assert any("P2pNcclConnector is not in the installed vLLM 0.32.0" in r for r in p2p)
    lm = info.missing_for(reg.get("lmcache-disk"), "cpu")
    assert any("'lmcache' is not installed" in r for r in lm)


def test_no_vllm_is_the_reason():
    info = InstallInfo(vllm_version=None, connectors=frozenset(), cuda_devices=0, modules={}, binaries={},
                       detection_error="ModuleNotFoundError: No module named 'vllm'")
    (reason,) = info.missing_for(MediumRegistry().get("colocated"), "cpu")
    assert "vLLM is not importable" in reason and "No module named 'vllm'" in reason


def test_role_setups(tmp_path):
    reg = MediumRegistry()
    ctx = MediumContext(workdir=tmp_path, device="cpu", side_channel_port=5555)
    pre = reg.get("nixl-cpu").role_setup("prefill", ctx)
    dec = reg.get("nixl-cpu").role_setup("decode", ctx)
    assert pre.kv_transfer_config["kv_role"] == "kv_producer" and dec.kv_transfer_config["kv_role"] == "kv_consumer"
    assert pre.kv_transfer_config["kv_buffer_device"] == "cpu"
    assert pre.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5555"
    disk = reg.get("disk").role_setup("decode", ctx).kv_transfer_config
    assert disk["kv_connector_extra_config"]["shared_storage_path"].startswith(str(tmp_path))
    assert reg.get("colocated").roles() == ("colocated",)
    assert reg.get("colocated-dp").roles() == ("colocated", "colocated")
    assert reg.get("disk").roles() == ("prefill", "decode")
