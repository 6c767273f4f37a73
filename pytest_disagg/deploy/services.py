"""Auxiliary services a medium needs, started and stopped by the deployment (loopback only).

The seed study's dis-cpu set-up publishes KV chunks through a Redis server; the suite starts a
real one per deployment rather than assuming one is running somewhere.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from . import processes
from .server import free_port, log_tail


class ServiceError(RuntimeError):
    pass


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, log_path: Path, timeout_s: float = 20.0) -> tuple[str, Callable[[], None]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(data), "--protected-mode", "yes"]
    proc = processes.spawn(cmd, env=dict(os.environ), log=log)
    deadline = time.monotonic() + timeout_s
    while not _redis_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            processes.terminate(proc)
            log.close()
            raise ServiceError(f"redis-server did not answer PING: {' '.join(cmd)}\n{log_tail(log_path)}")
        time.sleep(0.05)

    def stop() -> None:
        processes.terminate(proc, grace_s=3)
        log.close()

    return f"127.0.0.1:{port}", stop


SERVICES: dict[str, Callable[[Path, Path], tuple[str, Callable[[], None]]]] = {"redis": start_redis}


def start_service(name: str, workdir: Path, log_path: Path) -> tuple[str, Callable[[], None]]:
    try:
        starter = SERVICES[name]
    except KeyError:
        raise ServiceError(f"unknown service {name!r}; known: {sorted(SERVICES)}") from None
    return starter(workdir, log_path)
