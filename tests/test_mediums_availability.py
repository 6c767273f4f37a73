"""Why each LMCache medium cannot run on a machine like this one, and that it can where it should."""
from __future__ import annotations

import importlib.util
import shutil

import pytest

from pytest_disagg.mediums import InstallInfo, MediumRegistry
from pytest_disagg.mediums.base import count_cuda_devices

LMCACHE_MEDIUMS = ("lmcache-cpu", "lmcache-disk", "lmcache-nixl")
CONNECTORS = frozenset({"NixlConnector", "ExampleConnector", "LMCacheConnectorV1"})


def install(cuda: int, modules: dict, binaries: dict | None = None) -> InstallInfo:
    return InstallInfo(vllm_version="0.32.0", connectors=CONNECTORS, cuda_devices=cuda,
                       modules=modules, binaries=binaries or {})


@pytest.mark.parametrize("name", LMCACHE_MEDIUMS)
def test_cpu_machine_reasons(name):
    medium = MediumRegistry().get(name)
    info = install(0, {"lmcache": False, "nixl": True, "redis": False, "aiofiles": True}, {"redis-server": None})
    reasons = info.missing_for(medium, "cpu")
    assert "needs CUDA (no GPU visible on this machine)" in reasons
    assert "Python module 'lmcache' is not installed" in reasons
    if name == "lmcache-cpu":
        assert "program 'redis-server' is not on PATH" in reasons
        assert "Python module 'redis' is not installed" in reasons


@pytest.mark.parametrize("name", LMCACHE_MEDIUMS)
def test_gpu_machine_with_everything_runs_them(name):
    medium = MediumRegistry().get(name)
    info = install(2, {m: True for m in ("lmcache", "nixl", "redis", "aiofiles")}, {"redis-server": "/usr/bin/redis-server"})
    assert info.missing_for(medium, "cuda") == []
    assert "needs CUDA (no GPU selected" in " ".join(info.missing_for(medium, "cpu"))


def test_each_lmcache_medium_asks_for_what_its_config_uses():
    reg = MediumRegistry()
    assert "nixl" in reg.get("lmcache-nixl").needs_modules          # transfer_channel: nixl
    assert "aiofiles" in reg.get("lmcache-disk").needs_modules      # the fs connector's import
    cpu = reg.get("lmcache-cpu")
    assert cpu.services == ("redis",) and "redis-server" in cpu.needs_binaries and "redis" in cpu.needs_modules
    assert {reg.get(n).paper_name for n in LMCACHE_MEDIUMS} == {"dis-cpu", "dis-disk", "dis-gpu"}
    assert reg.get("lmcache-nixl").handoff == "lmcache_pd"


def test_this_machine_skips_them_with_a_reason():
    """Detected the way the plugin detects (modules, binaries, GPUs), minus the vLLM probe."""
    reg = MediumRegistry()
    mediums = [reg.get(n) for n in LMCACHE_MEDIUMS]
    modules = {m: importlib.util.find_spec(m) is not None for med in mediums for m in med.needs_modules}
    binaries = {b: shutil.which(b) for med in mediums for b in med.needs_binaries}
    info = install(count_cuda_devices(), modules, binaries)
    for medium in mediums:
        reasons = info.missing_for(medium, "cpu")
        assert reasons, f"{medium.name} would run on CPU"
        assert any(r.startswith("needs CUDA") for r in reasons)
