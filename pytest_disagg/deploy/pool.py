"""Deployments keyed by configuration: started once, shared, and always torn down.

A deployment is a medium's servers (one colocated engine, N data-parallel engines, or a prefill
and a decode server), the services the medium needs (e.g. a Redis lookup server) and the proxy in
front. The pool starts each distinct configuration once per session; when more would be alive
than ``max_live`` allows (a 2-core CI box holds one pair comfortably), the least recently used
deployment is stopped first.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ..mediums import Medium, MediumContext, MediumRegistry
from ..models import ModelSpec, resolve_model
from . import processes
from .server import ServerHandle, ServerSpec, ServerStartError, VllmServer, _healthy, free_port, log_tail
from .services import start_service


class DeploymentError(RuntimeError):
    """A deployment that could not be brought up or failed its self-check."""


@dataclass(frozen=True)
class DeploymentConfig:
    """Everything that makes two deployments different; its key names the test parameter."""

    medium: str
    model: str = "tiny-llama-cpu"
    prefix_caching: bool = False
    device: str = "cpu"                  # "cpu" | "cuda"
    gpus: tuple[int, ...] = ()
    dtype: str | None = None             # None: float32 on CPU, the config's dtype on GPU
    max_model_len: int = 2048
    block_size: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    label: str | None = None             # e.g. the seed study's name ("co-2gpus")
    proxy_fault: str = "none"            # test-only broken hand-off
    proxy_extra_delay_ms: float = 0.0    # injected delay (gate power measurement)
    extra_server_args: tuple[str, ...] = ()
    variant: str = ""                    # names a non-standard config in ids ("fault", "slow5pct")

    def key(self) -> str:
        """Readable id for test names and logs; ``digest()`` is what tells configs apart."""
        name = self.label or self.medium
        return f"{name}-pc{int(self.prefix_caching)}" + (f"-{self.variant}" if self.variant else "")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()

    def resolved_dtype(self, model: ModelSpec) -> str:
        if self.dtype:
            return self.dtype
        return "float32" if self.device == "cpu" else model.config_dtype


@dataclass
class Deployment:
    """A running deployment, as tests see it."""

    key: str
    medium: Medium
    config: DeploymentConfig
    url: str                                  # the proxy; OpenAI API under /v1
    servers: tuple[ServerHandle, ...]
    model_name: str
    model: ModelSpec
    dtype: str
    kv_bytes_per_token: int
    workdir: Path
    services: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0
    selfcheck: dict | None = None
    confined_threads: list = field(default_factory=list)   # threads moved back onto their server's cores

    @property
    def prefill(self) -> tuple[ServerHandle, ...]:
        return tuple(s for s in self.servers if s.role == "prefill")

    @property
    def decode(self) -> tuple[ServerHandle, ...]:
        return tuple(s for s in self.servers if s.role in ("decode", "colocated"))

    def gpu_layout(self) -> dict[str, list[int]]:
        """GPU indices by role; a GPU in both lists means prefill and decode share it."""
        layout: dict[str, list[int]] = {}
        for s in self.servers:
            layout.setdefault(s.role, [])
            layout[s.role] += [g for g in s.gpu_indices if g not in layout[s.role]]
        return layout

    def to_json(self) -> dict:
        return {
            "key": self.key, "medium": self.medium.describe(), "config": asdict(self.config),
            "url": self.url, "servers": [s.to_json() for s in self.servers], "model": self.model.name,
            "dtype": self.dtype, "kv_bytes_per_token": self.kv_bytes_per_token,
            "startup_s": self.startup_s, "selfcheck": self.selfcheck, "confined_threads": self.confined_threads,
        }


# The proxy flag for each medium port the proxy binds (notify) or hands prefill (LMCache PD).
PROXY_PORT_FLAGS = {
    "lmcache_pd_notify": "--pd-notify-port",
    "lmcache_pd_init": "--pd-receiver-init-port",
    "lmcache_pd_alloc": "--pd-receiver-alloc-port",
}


def deployment_ports(medium: Medium) -> dict[str, int]:
    """Distinct free ports: one per role (connector side channels) and one per name in ``medium.ports``.

    Allocated once per deployment, so that every server's setup and the proxy agree on them.
    """
    names = list(dict.fromkeys(medium.roles())) + list(medium.ports)
    ports: dict[str, int] = {}
    for name in names:
        ports[name] = _free_port_except(ports.values())
    return ports


def _free_port_except(taken) -> int:
    """A free port not in ``taken``: two probes may return the same just-closed port."""
    port = free_port()
    while port in taken:
        port = free_port()
    return port


def proxy_command(medium: Medium, config: DeploymentConfig, handles: list[ServerHandle], port: int,
                  ports: Mapping[str, int], ctx: MediumContext | None = None) -> list[str]:
    """The proxy's command line: its hand-off, its backends and the medium ports it needs."""
    cmd = [sys.executable, "-m", "pytest_disagg.deploy.proxy", "--mode", medium.handoff, "--port", str(port)]
    for h in handles:
        flag = {"prefill": "--prefill", "decode": "--decode", "colocated": "--backend"}[h.role]
        cmd += [flag, h.url]
    for name in medium.ports:
        if name in PROXY_PORT_FLAGS:
            cmd += [PROXY_PORT_FLAGS[name], str(ports[name])]
    if medium.proxy_args is not None:
        if ctx is None:
            raise DeploymentError(f"medium {medium.name} needs the deployment's context for its proxy arguments")
        cmd += medium.proxy_args(ctx)
    if config.proxy_fault != "none":
        cmd += ["--fault", config.proxy_fault]
    if config.proxy_extra_delay_ms:
        cmd += ["--extra-delay-ms", str(config.proxy_extra_delay_ms)]
    return cmd


def assign_gpus(roles: tuple[str, ...], gpus: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Prefill on the first half of the GPUs, decode on the second; replicas one GPU each.

    With fewer GPUs than roles, roles share (the caller splits memory between them).
    """
    if not gpus:
        return [() for _ in roles]
    if set(roles) == {"prefill", "decode"} and len(gpus) >= 2:
        half = len(gpus) // 2
        return [tuple(gpus[:half]) if r == "prefill" else tuple(gpus[half:]) for r in roles]
    if roles and roles[0] == "colocated" and len(roles) == 1:
        return [(gpus[0],)]
    return [(gpus[i % len(gpus)],) for i in range(len(roles))]


def assign_cpu_cores(n_roles: int, n_cores: int | None = None) -> list[str]:
    """Disjoint core sets per server so that OpenMP threads of two engines never fight."""
    cores = sorted(os.sched_getaffinity(0)) if n_cores is None else list(range(n_cores))
    if n_roles <= 1:
        return [_ranges(cores[:1] if len(cores) <= 2 else cores[: len(cores) // 2])]
    per = max(1, len(cores) // n_roles)
    out = []
    for i in range(n_roles):
        chunk = cores[i * per:(i + 1) * per] or [cores[i % len(cores)]]
        out.append(_ranges(chunk))
    return out


def confine_servers(handles, cores: list[str | None]) -> list[dict]:
    """Move threads vLLM pinned outside a server's cores back onto them (see deploy/affinity.py:
    NIXL's CPU worker pins its main thread to the machine's last core, i.e. onto the other
    server's compute core on a 2-core box). Returns what was moved, per role."""
    from . import affinity

    moved = []
    for handle, spec in zip(handles, cores):
        if spec:
            moved += [{"role": handle.role, **m} for m in affinity.confine(handle.pid, affinity.parse_cores(spec))]
    return moved


def _ranges(cores: list[int]) -> str:
    if len(cores) > 1 and cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(str(c) for c in cores)


class DeploymentPool:
    def __init__(self, registry: MediumRegistry, *, logs_dir: Path | None, server_timeout_s: float = 300.0,
                 max_live: int = 1, selfcheck: bool = True, confine_threads: bool = True):
        self.registry = registry
        self.logs_dir = logs_dir
        self.server_timeout_s = server_timeout_s
        self.max_live = max_live
        self.run_selfcheck = selfcheck
        self.confine_threads = confine_threads   # False: leave vLLM's own thread pinning as it is
        self._live: OrderedDict[str, tuple[Deployment, list]] = OrderedDict()
        self._failed: dict[str, str] = {}
        self.starts: list[dict] = []          # every deployment start, for the summary
        self._tmp = Path(tempfile.mkdtemp(prefix="pytest-disagg-"))

    def get(self, config: DeploymentConfig) -> Deployment:
        key = config.digest()
        if key in self._live:
            self._live.move_to_end(key)
            return self._live[key][0]
        if key in self._failed:
            raise DeploymentError(f"deployment {config.key()} failed earlier in this session:\n{self._failed[key]}")
        while len(self._live) >= self.max_live:
            self._stop(next(iter(self._live)))
        try:
            deployment, stoppers = self._start(config)
        except (ServerStartError, DeploymentError, OSError) as exc:
            self._failed[key] = str(exc)
            raise DeploymentError(str(exc)) from None
        self._live[key] = (deployment, stoppers)
        return deployment

    def is_live(self, config: DeploymentConfig) -> bool:
        """Whether ``get(config)`` would hand out a running deployment without starting one."""
        return config.digest() in self._live

    def release(self, config: DeploymentConfig) -> None:
        """Stop a deployment now, e.g. before a benchmark that wants the machine to itself."""
        if config.digest() in self._live:
            self._stop(config.digest())

    def close(self) -> None:
        for key in list(self._live):
            self._stop(key)
        processes.terminate_all()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _stop(self, key: str) -> None:
        _, stoppers = self._live.pop(key)
        for stop in reversed(stoppers):
            try:
                stop()
            except Exception:  # keep stopping the rest
                pass

    # --- start ------------------------------------------------------------------------------
    def _start(self, config: DeploymentConfig) -> tuple[Deployment, list]:
        medium = self.registry.get(config.medium)
        model = resolve_model(config.model)
        dtype = config.resolved_dtype(model)
        key = config.key()
        tag = f"{key}-{config.digest()[:8]}"
        workdir = self._tmp / tag
        workdir.mkdir(parents=True, exist_ok=True)
        logs = (self.logs_dir or workdir / "logs")
        model_dir = model.materialize(workdir / "model")
        stoppers: list = []
        t0 = time.monotonic()
        try:
            services = {}
            for name in medium.services:
                addr, stop = start_service(name, workdir, logs / f"{tag}-{name}.log")
                services[name] = addr
                stoppers.append(stop)
            roles = medium.roles()
            gpu_sets = assign_gpus(roles, config.gpus) if config.device == "cuda" else [() for _ in roles]
            cores = assign_cpu_cores(len(roles)) if config.device == "cpu" else [None] * len(roles)
            shared_gpu = config.device == "cuda" and len({g for s in gpu_sets for g in s}) < len(roles)
            mem_util = config.gpu_memory_utilization or (round(0.85 / len(roles), 3) if shared_gpu else 0.85)
            handles: list[ServerHandle] = []
            pending: list[VllmServer] = []
            ports = deployment_ports(medium)
            for i, role in enumerate(roles):
                ctx = MediumContext(workdir=workdir, device=config.device, side_channel_port=ports[role] if role != "colocated" else free_port(),
                                    peer_ports=ports, services=services)
                setup = medium.role_setup(role, ctx)
                for rel, text in setup.files.items():
                    (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
                    (workdir / rel).write_text(text)
                spec = ServerSpec(
                    role=role, model_dir=model_dir, served_name=model.name, device=config.device, dtype=dtype,
                    max_model_len=config.max_model_len, prefix_caching=config.prefix_caching,
                    kv_transfer_config=setup.kv_transfer_config, env=setup.env, gpu_indices=gpu_sets[i],
                    cpu_cores=cores[i], gpu_memory_utilization=mem_util if config.device == "cuda" else None,
                    block_size=config.block_size, max_num_seqs=config.max_num_seqs,
                    extra_args=config.extra_server_args,
                )
                suffix = str(i) if len(roles) > 1 and role == "colocated" else ""
                server = VllmServer(spec, logs / f"{tag}-{role}{suffix}.log")
                server.start()
                stoppers.append(server.stop)
                if shared_gpu:
                    # One after the other: a GPU-sharing engine sizes its KV cache from free memory.
                    handles.append(server.wait_ready(self.server_timeout_s))
                else:
                    pending.append(server)
            handles += [server.wait_ready(self.server_timeout_s) for server in pending]
            confined = (confine_servers(handles, cores)
                        if self.confine_threads and config.device == "cpu" and len(roles) > 1 else [])
            proxy_ctx = MediumContext(workdir=workdir, device=config.device, side_channel_port=0, peer_ports=ports,
                                      services=services)
            proxy_url, proxy_stop = self._start_proxy(medium, config, handles, logs / f"{tag}-proxy.log", ports,
                                                      proxy_ctx)
            stoppers.append(proxy_stop)
            deployment = Deployment(
                key=key, medium=medium, config=config, url=proxy_url, servers=tuple(handles),
                model_name=model.name, model=model, dtype=dtype,
                kv_bytes_per_token=model.kv_bytes_per_token(dtype), workdir=workdir, services=services,
                startup_s=time.monotonic() - t0, confined_threads=confined,
            )
            if self.run_selfcheck and medium.disaggregated:
                from .selfcheck import run_selfcheck

                deployment.selfcheck = run_selfcheck(deployment)
                if not deployment.selfcheck["passed"]:
                    raise DeploymentError(
                        f"deployment {key}: no proof that the KV cache moved:\n{deployment.selfcheck['explanation']}"
                    )
        except BaseException:
            for stop in reversed(stoppers):
                try:
                    stop()
                except Exception:
                    pass
            raise
        self.starts.append({"key": key, "startup_s": deployment.startup_s,
                            "servers": [s.startup_s for s in deployment.servers]})
        return deployment, stoppers

    def _start_proxy(self, medium: Medium, config: DeploymentConfig, handles: list[ServerHandle], log_path: Path,
                     ports: Mapping[str, int], ctx: MediumContext | None = None):
        port = _free_port_except(ports.values())
        cmd = proxy_command(medium, config, handles, port, ports, ctx)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
        proc = processes.spawn(cmd, env=env, log=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                processes.terminate(proc)
                log.close()
                raise DeploymentError(f"proxy did not start: {' '.join(cmd)}\n{log_tail(log_path)}")
            time.sleep(0.1)

        def stop() -> None:
            processes.terminate(proc, grace_s=3)
            log.close()

        return url, stop


def with_overrides(config: DeploymentConfig, **changes) -> DeploymentConfig:
    return replace(config, **changes)
