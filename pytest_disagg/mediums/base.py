"""What a transfer medium is, and how to tell whether this install can run it.

A medium is data plus two small functions (the kv_transfer_config and the environment of a role),
so that adding one is a single entry in ``builtin.py`` (or a ``pytest_disagg_register_mediums`` hook
in a user's conftest.py) and never a change to the deployment code. How the proxy moves a request
from prefill to decode is the hand-off the medium names (``handoffs/``).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

from .. import handoffs
from ..children import processes

Role = Literal["prefill", "decode", "colocated"]


@dataclass(frozen=True)
class MediumContext:
    """Everything a medium's role builder may need to know about one deployment."""

    workdir: Path                     # per-deployment scratch directory (storage paths, configs)
    device: str                       # "cpu" or "cuda"
    side_channel_port: int            # a free port for this role's connector side channel
    peer_ports: Mapping[str, int] = field(default_factory=dict)  # other roles' ports, by name
    services: Mapping[str, str] = field(default_factory=dict)    # e.g. {"redis": "127.0.0.1:6390"}


@dataclass(frozen=True)
class RoleSetup:
    """How one vLLM server of a medium is started: connector config, env, extra CLI args."""

    kv_transfer_config: dict | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)   # relative path -> content (written in workdir)


RoleBuilder = Callable[[Role, MediumContext], RoleSetup]


def _no_connector(role: Role, ctx: MediumContext) -> RoleSetup:
    return RoleSetup()


@dataclass(frozen=True)
class Medium:
    """One way of serving: colocated, or prefill → KV transfer → decode over some path."""

    name: str
    summary: str
    handoff: str                            # what the proxy does between the two stages: a key of
                                            # handoffs.HANDOFFS (checked at registration)
    connector: str | None = None            # vLLM KV connector class name (registry key)
    needs_cuda: bool = False
    needs_modules: tuple[str, ...] = ()     # Python modules the servers import (e.g. "lmcache")
    needs_binaries: tuple[str, ...] = ()    # programs a fixture starts (e.g. "redis-server")
    services: tuple[str, ...] = ()          # services the deployment starts ("redis")
    replicas: int = 1                       # colocated engines behind the proxy (data parallel)
    evidence: Literal["none", "nixl_bytes", "external_hits"] = "none"  # how the self-check proves KV moved
    role_setup: RoleBuilder = _no_connector
    paper_name: str | None = None           # the seed study's name for this set-up, if it has one
    # Names of extra ports the deployment allocates once and shares: every role sees them in
    # ``MediumContext.peer_ports`` and the proxy gets those it binds or hands on (e.g. LMCache PD).
    ports: tuple[str, ...] = ()
    # Proxy arguments that hold decode until prefill's asynchronous store has landed
    # (``handoffs.storebarrier``), for storage mediums whose stores outlive prefill's answer.
    proxy_args: Callable[[MediumContext], list[str]] | None = None

    @property
    def disaggregated(self) -> bool:
        return handoffs.get(self.handoff).disaggregated

    def roles(self) -> tuple[Role, ...]:
        if self.disaggregated:
            return ("prefill", "decode")
        return ("colocated",) * self.replicas

    def describe(self) -> dict:
        """The medium's definition as data, for fingerprints and results JSON."""
        return {
            "name": self.name,
            "handoff": self.handoff,
            "connector": self.connector,
            "replicas": self.replicas,
            "needs_cuda": self.needs_cuda,
            "needs_modules": list(self.needs_modules),
            "services": list(self.services),
        }


@dataclass(frozen=True)
class InstallInfo:
    """What this machine and Python environment offer, detected once per session."""

    vllm_version: str | None
    connectors: frozenset[str]
    cuda_devices: int
    modules: Mapping[str, bool]
    binaries: Mapping[str, str | None]
    detection_error: str | None = None

    def missing_for(self, medium: Medium, device: str) -> list[str]:
        """Reasons this medium cannot run here; empty when it can."""
        missing: list[str] = []
        if self.vllm_version is None:
            missing.append(f"vLLM is not importable in {sys.executable} ({self.detection_error or 'not installed'})")
            return missing
        if medium.connector and medium.connector not in self.connectors:
            missing.append(
                f"connector {medium.connector} is not in the installed vLLM {self.vllm_version}'s registry"
            )
        if medium.needs_cuda and (device != "cuda" or self.cuda_devices == 0):
            missing.append("needs CUDA (no GPU selected: use --disagg-gpus / --disagg-device=cuda)"
                           if self.cuda_devices else "needs CUDA (no GPU visible on this machine)")
        for mod in medium.needs_modules:
            if not self.modules.get(mod, False):
                missing.append(f"Python module {mod!r} is not installed")
        for binary in medium.needs_binaries:
            if not self.binaries.get(binary):
                missing.append(f"program {binary!r} is not on PATH")
        return missing


_PROBE = r"""
import json, sys
out = {}
try:
    import vllm
    out["vllm_version"] = vllm.__version__
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    out["connectors"] = sorted(KVConnectorFactory._registry)
except Exception as exc:  # report, never crash the probe
    out["error"] = f"{type(exc).__name__}: {exc}"
print("PROBE-JSON " + json.dumps(out))
"""


@functools.lru_cache(maxsize=1)
def probe_vllm(python: str = sys.executable, timeout: float = 900.0) -> tuple[str | None, frozenset[str], str | None]:
    """Read the installed vLLM's version and KV-connector registry in a child interpreter.

    A child, because importing vLLM costs ~10 s and pulls torch into the pytest process, and
    because the registry — not a version table — is the truth about which connectors exist.
    """

    try:
        proc = processes.run([python, "-c", _PROBE], timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, frozenset(), f"probing vLLM failed (a loaded machine can take minutes to import it): {exc}"
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE-JSON "):
            data = json.loads(line[len("PROBE-JSON "):])
            return data.get("vllm_version"), frozenset(data.get("connectors", ())), data.get("error")
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return None, frozenset(), "probe printed nothing: " + " | ".join(tail)


def count_cuda_devices() -> int:
    """GPUs NVML can see (0 without a driver or without nvidia-ml-py)."""
    try:
        import pynvml  # type: ignore[import-not-found]  # optional dependency: nvidia-ml-py
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def detect_install(mediums: list[Medium]) -> InstallInfo:
    version, connectors, error = probe_vllm()
    modules = {m: importlib.util.find_spec(m) is not None for med in mediums for m in med.needs_modules}
    binaries = {b: shutil.which(b) for med in mediums for b in med.needs_binaries}
    return InstallInfo(
        vllm_version=version,
        connectors=connectors,
        cuda_devices=count_cuda_devices(),
        modules=modules,
        binaries=binaries,
        detection_error=error,
    )
