"""The local launcher: every server a child of pytest, under the supervisor (today's behaviour)."""
from __future__ import annotations

from typing import Sequence

from ...children import processes


class LocalLauncher:
    name = "local"

    def for_deployment(self, roles: Sequence[str]):
        def start(index, name, cmd, *, env, log_path, ports):
            return processes.start(name, cmd, env=env, log_path=log_path, ports=ports)
        return start

    def describe(self) -> dict:
        return {"launcher": "local"}

    def close(self) -> None:
        pass
