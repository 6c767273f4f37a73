"""Where a server process runs: one registry of launchers, separate from the medium and the hand-off.

A launcher turns "start this command line for this role" into a running child the pool can watch
(``alive()``, ``poll()``, ``explain()``) and stop through :func:`pytest_disagg.children.processes.stop_all`.
``local`` (the default) is today's behaviour: a child of pytest under the supervisor. ``ray`` runs
each server inside a Ray actor pinned to a node by a placement group (``ray.py``). The proxy, the
services and the client always stay with pytest.

A newcomer adds a launcher in one place: a class with ``name``, ``for_deployment(roles)``,
``describe()`` and ``close()``, registered in :data:`LAUNCHERS`.
"""
from __future__ import annotations

from typing import Callable, Mapping, Protocol, Sequence

from .local import LocalLauncher


class StartFn(Protocol):
    def __call__(self, index: int, name: str, cmd: Sequence[str], *, env: Mapping[str, str], log_path,
                 ports: Sequence[int]): ...


class Launcher(Protocol):
    name: str

    def for_deployment(self, roles: Sequence[str]) -> StartFn:
        """A start function for one deployment's servers (``index`` is the role's position)."""

    def describe(self) -> dict:
        """What the fingerprint and the results record (launcher name, nodes)."""

    def close(self) -> None:
        """Release what the launcher holds (a Ray connection); children are stopped by the pool."""


def _ray(**options) -> Launcher:
    from .ray import RayLauncher     # optional dependency: ray (imported only when asked for)

    return RayLauncher(**options)


LAUNCHERS: dict[str, Callable[..., Launcher]] = {"local": lambda **_: LocalLauncher(), "ray": _ray}


def make_launcher(name: str, **options) -> Launcher:
    try:
        factory = LAUNCHERS[name]
    except KeyError:
        raise ValueError(f"unknown launcher {name!r}; known: {', '.join(LAUNCHERS)}") from None
    return factory(**options)


__all__ = ["LAUNCHERS", "Launcher", "LocalLauncher", "StartFn", "make_launcher"]
