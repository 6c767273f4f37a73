"""Auxiliary services a medium needs, started and stopped by the deployment (loopback only).

The seed study's dis-cpu set-up publishes KV chunks through a Redis server; the suite starts a
real one per deployment rather than assuming one is running somewhere.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Callable

from ..children import processes
from .server import free_port


class ServiceError(RuntimeError):
    pass


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, log_path: Path, timeout_s: float = 20.0) -> tuple[str, processes.Child]:
    """A loopback Redis server: its ``host:port`` and its process (end it with ``processes.stop``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(data), "--protected-mode", "yes"]
    try:
        child = processes.start_healthy("redis-server", cmd, lambda: _redis_ping(port), timeout_s,
                                        env=dict(os.environ), log_path=log_path, ports=(port,), grace_s=3)
    except processes.StartError as exc:
        raise ServiceError(f"redis-server did not answer PING: {exc}") from None
    return f"127.0.0.1:{port}", child


SERVICES: dict[str, Callable[[Path, Path], tuple[str, processes.Child]]] = {"redis": start_redis}


def start_service(name: str, workdir: Path, log_path: Path) -> tuple[str, processes.Child]:
    try:
        starter = SERVICES[name]
    except KeyError:
        raise ServiceError(f"unknown service {name!r}; known: {sorted(SERVICES)}") from None
    return starter(workdir, log_path)
