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
import signal
import sys
import tempfile
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ..devices import policy
from ..mediums import Medium, MediumContext, MediumRegistry
from ..models import ModelSpec, resolve_model
from .. import handoffs
from ..checkpoints import CheckpointError, build_checkpoint_in_child
from ..children import affinity, processes
from ..kvspec import KVSpecError, KVSpecProbe, cross_check
from .launchers import Launcher, LocalLauncher
from .selfcheck import run_selfcheck
from .server import ServerHandle, ServerSpec, VllmServer, _healthy, free_port
from .services import start_service


class DeploymentError(RuntimeError):
    """A deployment that could not be brought up or failed its self-check."""

    died = False        # True when a process of it died (killed, OOM): worth starting again


#: How the servers get their weights: vLLM's random ``--load-format dummy`` (nothing to build; the
#: greedy output then follows the last prompt token only) or a real checkpoint of the model config,
#: seeded random weights saved by transformers (``pytest_disagg.checkpoints``; built once per config and
#: cached), whose output depends on the whole context.
WEIGHTS = ("dummy", "checkpoint")


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
    extra_server_args: tuple[str, ...] = ()
    python: str | None = None            # the servers' interpreter (A/B side B); None: this one
    server_env: tuple[tuple[str, str], ...] = ()   # extra server environment (A/B side B)
    variant: str = ""                    # names a non-standard config in ids ("slow5pct")
    weights: str = "dummy"               # "dummy" (--load-format dummy) or "checkpoint" (pytest_disagg.checkpoints)
    kv_cache_dtype: str = "auto"         # vLLM's --kv-cache-dtype
    eager: bool | None = None            # --enforce-eager; None: the device's policy (devices.py)

    def serving_mode(self) -> str:
        """``eager`` or ``cuda-graphs`` (vLLM's default CUDA graphs and compilation). Extra server
        arguments that ask for ``--enforce-eager`` (an A/B's side B) make the mode eager too, so the
        start-up line and the deployment JSON say how the servers really ran."""
        if "--enforce-eager" in self.extra_server_args:
            return "eager"
        return policy(self.device).serving_mode(self.eager)

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
    kv_bytes_per_token: int                   # as vLLM sizes its cache (pytest_disagg.kvspec)
    workdir: Path
    services: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0
    selfcheck: dict | None = None
    kv_spec: dict | None = None               # vLLM's per-layer sizing and the formula's cross-check
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
            "serving_mode": self.config.serving_mode(), "url": self.url,
            "servers": [s.to_json() for s in self.servers], "model": self.model.name,
            "dtype": self.dtype, "kv_bytes_per_token": self.kv_bytes_per_token,
            "startup_s": self.startup_s, "selfcheck": self.selfcheck, "kv_spec": self.kv_spec,
            "confined_threads": self.confined_threads,
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
    """The proxy's command line: its hand-off, its backends, the medium ports the hand-off needs
    (``handoffs``) and the medium's own proxy arguments."""
    cmd = [sys.executable, "-m", "pytest_disagg.deploy.proxy", "--mode", medium.handoff, "--port", str(port)]
    for h in handles:
        flag = {"prefill": "--prefill", "decode": "--decode", "colocated": "--backend"}[h.role]
        cmd += [flag, h.url]
    cmd += handoffs.get(medium.handoff).proxy_flags(medium.ports, ports)
    if medium.proxy_args is not None:
        if ctx is None:
            raise DeploymentError(f"medium {medium.name} needs the deployment's context for its proxy arguments")
        cmd += medium.proxy_args(ctx)
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


def shares_gpus(roles, gpu_sets) -> bool:
    """Whether some roles share a GPU (fewer distinct GPUs than roles): their memory is split."""
    return len({g for s in gpu_sets for g in s}) < len(roles)


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
    """Move threads vLLM pinned outside a server's cores back onto them (see children/affinity.py:
    NIXL's CPU worker pins its main thread to the machine's last core, i.e. onto the other
    server's compute core on a 2-core box). Returns what was moved, per role."""
    moved = []
    for handle, spec in zip(handles, cores):
        if spec:
            moved += [{"role": handle.role, **m} for m in affinity.confine(handle.pid, affinity.parse_cores(spec))]
    return moved


def _ranges(cores: list[int]) -> str:
    if len(cores) > 1 and cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(str(c) for c in cores)


MAX_RESTARTS = 2        # per configuration and session, after a process of it died


@dataclass
class _Running:
    deployment: Deployment
    children: list[processes.Child]       # services, servers, proxy, in start order


def dead_children(children) -> list[processes.Child]:
    return [c for c in children if not c.stopped_by_us and not c.alive()]


def explain_deaths(dead, lines: int = 30) -> str:
    return "\n".join(c.explain(c.status_text(), lines) for c in dead)


class DeploymentPool:
    def __init__(self, registry: MediumRegistry, *, logs_dir: Path | None, server_timeout_s: float = 300.0,
                 max_live: int = 1, selfcheck: bool = True, cache_dir: Path | None = None,
                 confine_threads: bool = True, pause_idle: bool = True,
                 launcher: Launcher | None = None):
        self.registry = registry
        self.launcher = launcher or LocalLauncher()     # where servers run (deploy/launchers)
        self.logs_dir = logs_dir
        self.server_timeout_s = server_timeout_s
        self.max_live = max_live
        self.run_selfcheck = selfcheck
        self.confine_threads = confine_threads   # False: leave vLLM's own thread pinning as it is
        self.pause_idle = pause_idle             # False: other live deployments keep running (see others_paused)
        self._live: OrderedDict[str, _Running] = OrderedDict()
        self._paused: dict[str, tuple[int, list[int]]] = {}   # key -> (nesting depth, pids stopped)
        self._unused: dict[str, list[int]] = {}   # key -> pids stopped until a test gets it (pause_unused)
        self._failed: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        self._fronts: dict[str, str] = {}     # a front_with proxy's config digest -> its servers' deployment
        self.starts: list[dict] = []          # every deployment start, for the summary
        self.deaths: list[dict] = []          # every process that died under a deployment
        self._tmp = Path(tempfile.mkdtemp(prefix="pytest-disagg-"))
        # Checkpoints and vLLM's KV sizing, shared by the deployments (and pools) of a session.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self._tmp / "cache"
        processes.register_dir(self._tmp)

    def medium_of(self, config: DeploymentConfig) -> Medium:
        """The one place a config's medium name becomes its ``Medium``, in the registry this pool was
        given (the session's). A config keeps the name: it enters the results JSON, digests and
        baseline keys."""
        return self.registry.get(config.medium)

    def get(self, config: DeploymentConfig) -> Deployment:
        key = config.digest()
        if key in self._live:
            self._continue_unused(key)
            if self.check(config) is None:
                self._live.move_to_end(key)
                return self._live[key].deployment
        if key in self._failed:
            raise DeploymentError(f"deployment {config.key()} failed earlier in this session:\n{self._failed[key]}")
        while len(self._live) >= self.max_live:
            self._stop(next(iter(self._live)))
        children: list[processes.Child] = []
        try:
            with self.others_paused():
                deployment = self._start(config, children)
        except (processes.StartError, DeploymentError, OSError) as exc:
            message = str(exc)
            restarts = self._restarts.get(key, 0)
            if getattr(exc, "died", False) and restarts < MAX_RESTARTS:
                # A process died (killed, OOM): the next test that needs it starts it afresh.
                self._restarts[key] = restarts + 1
                message += "\n(a process died: the next test that needs this deployment starts it again)"
            else:
                if getattr(exc, "died", False):
                    message += f"\n(started {restarts + 1} times in this session: not again)"
                self._failed[key] = message
            raise DeploymentError(message) from None
        self._live[key] = _Running(deployment, children)
        return deployment

    def memory_share(self, config: DeploymentConfig) -> float:
        """The GPU memory fraction each server of ``config`` takes: the config's, else 0.85 split
        between the roles that share a GPU."""
        if config.gpu_memory_utilization:
            return config.gpu_memory_utilization
        roles = self.medium_of(config).roles()
        return round(0.85 / len(roles), 3) if shares_gpus(roles, assign_gpus(roles, config.gpus)) else 0.85

    def sharing_gpus(self, config: DeploymentConfig, ways: int) -> DeploymentConfig:
        """``config`` with its servers' memory cut to 1/``ways`` of what they take alone, so that
        ``ways`` deployments stay up on the same GPUs (an A/B's kept-up sides)."""
        if config.device != "cuda" or ways <= 1:
            return config
        return replace(config, gpu_memory_utilization=round(self.memory_share(config) / ways, 3))

    def front_with(self, deployment: Deployment, medium: Medium) -> Deployment:
        """``deployment``'s servers behind a proxy of their own for ``medium`` (the same servers and
        hand-off, other proxy arguments: e.g. ``testing.faults.delayed``'s known slowdowns). The
        proxy stops with the deployment. Why: the A/B rule's power wants a side B whose only
        difference is a slowdown of known size; this gives one without a start of its own (on a GPU
        a start with CUDA graphs costs about a minute) while B still runs on another start than A1."""
        if medium.handoff != deployment.medium.handoff or medium.ports:
            raise DeploymentError(f"medium {medium.name} cannot front {deployment.key}'s servers: a second proxy "
                                  f"needs the same hand-off and no ports of its own")
        running = self._live[deployment.config.digest()]
        config = replace(deployment.config, medium=medium.name)
        ports = deployment_ports(deployment.medium)
        ctx = MediumContext(workdir=deployment.workdir, device=config.device, side_channel_port=0, peer_ports=ports,
                            services=deployment.services)
        log = (self.logs_dir or deployment.workdir / "logs") / f"{config.key()}-{config.digest()[:8]}-proxy.log"
        url, proxy = self._start_proxy(medium, config, list(deployment.servers), log, ports, ctx)
        running.children.append(proxy)
        self._fronts[config.digest()] = deployment.config.digest()
        return replace(deployment, key=config.key(), medium=medium, config=config, url=url)

    def check(self, config: DeploymentConfig, stage: str = "between tests") -> str | None:
        """None while every process of this deployment runs; otherwise why not (each dead process's
        exit status and log tail) — and the deployment is stopped, to be started afresh by ``get``."""
        key = config.digest()
        running = self._live.get(key)
        if running is None:
            return None
        dead = dead_children(running.children)
        if not dead:
            return None
        text = f"deployment {config.key()}: a process died ({stage}):\n{explain_deaths(dead)}"
        self._record_deaths(config, dead, stage)
        self._stop(key)
        return text

    def _record_deaths(self, config: DeploymentConfig, dead, stage: str) -> None:
        self.deaths += [{"deployment": config.key(), "process": c.name, "pid": c.pid, "stage": stage,
                         "status": c.poll(), "log": str(c.log_path)} for c in dead]

    def live(self) -> list[Deployment]:
        """The deployments running (or waiting stopped) now, least recently used first."""
        return [running.deployment for running in self._live.values()]

    def is_live(self, config: DeploymentConfig) -> bool:
        """Whether ``get(config)`` would hand out a running deployment without starting one."""
        return config.digest() in self._live

    def release(self, config: DeploymentConfig) -> None:
        """Stop a deployment now, e.g. before a benchmark that wants the machine to itself."""
        if config.digest() in self._live:
            self._stop(config.digest())

    @contextmanager
    def extra_slot(self):
        """One more deployment may be alive during the block: a property's variant or reference
        deployment starts without stopping the session deployment a fixture still holds."""
        self.max_live += 1
        try:
            yield
        finally:
            self.max_live -= 1

    @contextmanager
    def others_paused(self, *keep: "Deployment | None"):
        """Every live CPU deployment but ``keep`` stopped (SIGSTOP, its whole process trees) for the
        block, then continued: while a deployment starts (``keep`` None: all are paused), while one
        is measured, or while a property drives two at once.

        Why: an idle nixl-cpu server is not idle — NIXL's UCX progress thread polls with a zero
        timeout (NIXL 1.5's Python binding sets ``pthrDelay = 0``) — so a kept-up pair holds both
        cores of a 2-core box, and a deployment started beside it took 248-346 s instead of 34-44 s
        (``benchmarks/idle_spinners.py``). Lowering those threads to SCHED_IDLE was tried and did
        not help (the start then timed out at 300 s): the spinning vCPUs slow the start-up's file
        reads too. Only the local launcher's CPU deployments are paused: their processes are ours
        and on this host. A block that drives two deployments at once keeps both, and continues
        them if they were waiting stopped since the last test (``pause_unused``)."""
        kept = {self._fronts.get(d.config.digest(), d.config.digest()) for d in keep if d is not None}
        for key in kept:                  # driven in the block: running, whatever the last test left
            self._continue_unused(key)
        keys = [key for key in self._pausable() if key not in kept and key not in self._unused]
        for key in keys:        # blocks nest (a start inside a measured block): the outermost signals
            depth, pids = self._paused.get(key, (0, []))
            if depth == 0:
                pids = processes.signal_trees(self._live[key].children, signal.SIGSTOP)
            self._paused[key] = (depth + 1, pids)
        try:
            yield [p for key in keys for p in self._paused[key][1]]
        finally:
            for key in keys:
                if key not in self._paused:             # stopped inside the block
                    continue
                depth, pids = self._paused.pop(key)
                if depth > 1:
                    self._paused[key] = (depth - 1, pids)
                else:
                    processes.signal_pids(pids, signal.SIGCONT)

    def pause_unused(self) -> list[int]:
        """Stop every live CPU deployment until ``get`` hands it out again; the pids stopped now.

        Called before each test (the plugin's ``pytest_runtest_setup``): a test gets its deployment
        through ``get`` (the ``disagg_deployment`` fixture looks it up per test), so the deployments
        it does not use wait stopped — and a unit test is not left one core, or none, beside an idle
        nixl-cpu pair (see ``others_paused``; in CI a store-barrier test whose quiet period is 0.5 s
        timed out that way, and an interrupt test's child finished before its Ctrl-C came)."""
        stopped = []
        for key in self._pausable():
            if key not in self._unused and key not in self._paused:
                self._unused[key] = processes.signal_trees(self._live[key].children, signal.SIGSTOP)
                stopped += self._unused[key]
        return stopped

    def _continue_unused(self, key: str) -> None:
        pids = self._unused.pop(key, None)
        if pids:
            processes.signal_pids(pids, signal.SIGCONT)

    def _pausable(self) -> list[str]:
        """Live deployments whose processes this host may stop: the local launcher's, where the
        device's policy pauses idle ones (``devices.py``: on CPU)."""
        if not self.pause_idle or self.launcher.name != "local":
            return []
        return [key for key, running in self._live.items() if policy(running.deployment.config.device).pause_idle]

    def close(self) -> None:
        for key in list(self._live):
            self._stop(key)
        processes.terminate_all()
        self.launcher.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        processes.unregister_dir(self._tmp)

    def _stop(self, key: str) -> None:
        depth, pids = self._paused.pop(key, (0, []))
        processes.signal_pids(pids, signal.SIGCONT)      # stopped inside a paused block: let it end
        self._continue_unused(key)
        processes.stop_all(reversed(self._live.pop(key).children))

    # --- start ------------------------------------------------------------------------------
    def _start(self, config: DeploymentConfig, children: list[processes.Child]) -> Deployment:
        """Start every process of the deployment (each appended to ``children``); on any failure stop
        them all and raise an error naming the stage and every process that died, with its log tail."""
        stage = ["preparation"]
        try:
            return self._start_stages(config, children, stage)
        except BaseException as exc:
            # A given-up start: a vLLM server still starting ignores SIGTERM (it ran out the whole
            # 10 s grace every time), so its tree gets the quick grace.
            if not isinstance(exc, Exception):      # Ctrl-C, SIGTERM: just stop everything
                processes.stop_all(reversed(children), processes.QUICK_GRACE_S)
                raise
            # A 502 from the proxy may come a moment before the dead server's exit is seen.
            settle = time.monotonic() + 2.0
            while not dead_children(children) and time.monotonic() < settle and children:
                time.sleep(0.1)
            dead = dead_children(children)
            processes.stop_all(reversed(children), processes.QUICK_GRACE_S)
            message = f"deployment {config.key()} failed at stage '{stage[0]}': {exc}"
            if dead and not isinstance(exc, processes.StartError):
                message += "\n" + explain_deaths(dead)
            elif dead:
                others = [c for c in dead if str(c.pid) not in str(exc)]
                if others:
                    message += "\n" + explain_deaths(others)
            self._record_deaths(config, dead, stage[0])
            error = DeploymentError(message)
            error.died = bool(dead)
            raise error from None

    def _start_stages(self, config: DeploymentConfig, children: list[processes.Child], stage: list[str]) -> Deployment:
        medium = self.medium_of(config)
        model = resolve_model(config.model)
        dtype = config.resolved_dtype(model)
        key = config.key()
        tag = f"{key}-{config.digest()[:8]}"
        workdir = self._tmp / tag
        workdir.mkdir(parents=True, exist_ok=True)
        logs = (self.logs_dir or workdir / "logs")
        model_dir, load_format = model_directory(model, config, workdir, self.cache_dir)
        t0 = time.monotonic()
        kv_probe = start_kv_probe(model_dir, config, dtype, self.cache_dir)   # runs while the servers start
        try:      # the probe ends with the start, however the start ends
            services = {}
            for name in medium.services:
                stage[0] = f"service {name}"
                addr, child = start_service(name, workdir, logs / f"{tag}-{name}.log")
                services[name] = addr
                children.append(child)
            stage[0] = "server start-up"
            roles = medium.roles()
            gpu_sets = assign_gpus(roles, config.gpus) if config.device == "cuda" else [() for _ in roles]
            cores = assign_cpu_cores(len(roles)) if config.device == "cpu" else [None] * len(roles)
            shared_gpu = config.device == "cuda" and shares_gpus(roles, gpu_sets)
            mem_util = self.memory_share(config)
            handles: list[ServerHandle] = []
            pending: list[VllmServer] = []
            ports = deployment_ports(medium)
            launch = self.launcher.for_deployment(roles)
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
                    kv_transfer_config=setup.kv_transfer_config, env={**setup.env, **dict(config.server_env)},
                    gpu_indices=gpu_sets[i], python=config.python,
                    cpu_cores=cores[i], gpu_memory_utilization=mem_util if config.device == "cuda" else None,
                    block_size=config.block_size, max_num_seqs=config.max_num_seqs,
                    extra_args=config.extra_server_args, load_format=load_format,
                    kv_cache_dtype=config.kv_cache_dtype, eager=config.serving_mode() == "eager",
                )
                suffix = str(i) if len(roles) > 1 and role == "colocated" else ""
                server = VllmServer(spec, logs / f"{tag}-{role}{suffix}.log")
                server.start(launch, i)
                children.append(server.child)
                if shared_gpu:
                    # One after the other: a GPU-sharing engine sizes its KV cache from free memory.
                    handles.append(server.wait_ready(self.server_timeout_s))
                else:
                    pending.append(server)
            # Started together, waited for together: one that dies ends the wait for all.
            handles += [server.wait_ready(self.server_timeout_s, watch=[s.child for s in pending if s is not server])
                        for server in pending]
            # Threads can be re-pinned only where pytest runs (the local launcher).
            confined = (confine_servers(handles, cores) if self.confine_threads and config.device == "cpu"
                        and len(roles) > 1 and self.launcher.name == "local" else [])
            stage[0] = "proxy start-up"
            proxy_ctx = MediumContext(workdir=workdir, device=config.device, side_channel_port=0, peer_ports=ports,
                                      services=services)
            proxy_url, proxy = self._start_proxy(medium, config, handles, logs / f"{tag}-proxy.log", ports, proxy_ctx)
            children.append(proxy)
            stage[0] = "KV sizing (vLLM probe)"
            kv_bytes, kv_spec = kv_probe_result(kv_probe, model, dtype, config.kv_cache_dtype)
            deployment = Deployment(
                key=key, medium=medium, config=config, url=proxy_url, servers=tuple(handles),
                model_name=model.name, model=model, dtype=dtype,
                kv_bytes_per_token=kv_bytes, workdir=workdir, services=services,
                startup_s=time.monotonic() - t0, kv_spec=kv_spec, confined_threads=confined,
            )
            if self.run_selfcheck and medium.disaggregated:
                stage[0] = "self-check"
                deployment.selfcheck = run_selfcheck(deployment)
                if not deployment.selfcheck["passed"]:
                    raise DeploymentError(f"no proof that the KV cache moved:\n{deployment.selfcheck['explanation']}")
            self.starts.append({"key": key, "startup_s": deployment.startup_s,
                                "servers": [s.startup_s for s in deployment.servers],
                                "restart": self._restarts.get(config.digest(), 0)})
            return deployment
        finally:
            kv_probe.cancel()

    def _start_proxy(self, medium: Medium, config: DeploymentConfig, handles: list[ServerHandle], log_path: Path,
                     ports: Mapping[str, int], ctx: MediumContext | None = None) -> tuple[str, processes.Child]:
        port = _free_port_except(ports.values())
        cmd = proxy_command(medium, config, handles, port, ports, ctx)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
        url = f"http://127.0.0.1:{port}"
        child = processes.start_healthy("proxy", cmd, lambda: _healthy(url), 30, env=env, log_path=log_path,
                                        ports=(port,), grace_s=3)
        return url, child


def model_directory(model: ModelSpec, config: DeploymentConfig, workdir: Path, cache_dir: Path) -> tuple[Path, str]:
    """The directory the servers load and its ``--load-format``: the config with dummy weights,
    or a real checkpoint built by transformers (cached per config hash)."""
    if config.weights == "dummy":
        return model.materialize(workdir / "model"), "dummy"
    if config.weights == "checkpoint":
        try:
            return build_checkpoint_in_child(model.config_path, cache_dir / "checkpoints"), "auto"
        except CheckpointError as exc:
            raise DeploymentError(str(exc)) from None
    raise DeploymentError(f"weights={config.weights!r}: allowed values are {', '.join(WEIGHTS)}")


def start_kv_probe(model_dir: Path, config: DeploymentConfig, dtype: str, cache_dir: Path):
    return KVSpecProbe([{"model_dir": model_dir, "dtype": dtype, "kv_cache_dtype": config.kv_cache_dtype,
                         "block_size": config.block_size, "max_model_len": config.max_model_len}],
                       device=config.device, cache_dir=cache_dir / "kvspec")


def kv_probe_result(probe, model: ModelSpec, dtype: str, kv_cache_dtype: str) -> tuple[int, dict]:
    """vLLM's bytes per token and its sizing (with the formula's cross-check) for the deployment.
    When vLLM cannot be asked, the formula stands in only where it is known to hold (plain
    attention, the model's dtype in the cache); otherwise the deployment fails, saying why."""
    formula = model.kv_bytes_per_token(dtype)
    try:
        spec = probe.results()[0]
    except KVSpecError as exc:
        if model.formula_applies and kv_cache_dtype == "auto":
            return formula, {"bytes_per_token": formula, "source": "formula (vLLM's probe failed)",
                             "probe_error": str(exc), "formula_bytes_per_token": formula}
        raise DeploymentError(f"no KV bytes per token for {model.name} (kv cache dtype {kv_cache_dtype}): "
                              f"{exc}") from None
    disagreement = cross_check(spec, formula)
    return spec.bytes_per_token, {**spec.to_json(), "formula_bytes_per_token": formula,
                                  "formula_disagreement": disagreement}


def with_overrides(config: DeploymentConfig, **changes) -> DeploymentConfig:
    return replace(config, **changes)
