"""How the proxy hands a request from prefill to decode: one registry of hand-offs.

A medium names its hand-off by key (``Medium.handoff``, checked when the medium is registered);
the pool passes it to the proxy as ``--mode`` and the proxy runs that class's ``transition``.
A newcomer adds a hand-off in one place: a module here with a :class:`Handoff` subclass
(``base.py`` says what it owns), listed in :data:`HANDOFFS`. The proxy runs as its own process,
so a hand-off must be importable from here, not only registered from a conftest.py.
"""
from __future__ import annotations

from .base import Handoff, PrefillFirst, StageError, Upstreams
from .kv_params import KvParams
from .lmcache_pd import LmcachePd
from .none import NoHandoff
from .storage import Storage

HANDOFFS: dict[str, type[Handoff]] = {h.name: h for h in (NoHandoff, KvParams, Storage, LmcachePd)}


class UnknownHandoffError(ValueError):
    pass


def get(name: str) -> type[Handoff]:
    try:
        return HANDOFFS[name]
    except (KeyError, TypeError):
        raise UnknownHandoffError(f"unknown hand-off {name!r}; known: {', '.join(HANDOFFS)}") from None


def create(name: str, prefill: list[str], decode: list[str], options: dict) -> Handoff:
    """The hand-off ``name`` for one proxy, given the options of every hand-off (from the
    command line or a test); an option another hand-off owns is an error naming both."""
    cls = get(name)
    mine, foreign = {}, []
    for key, value in options.items():
        if key in cls.takes:
            mine[key] = value
            continue
        owner = next((h for h in HANDOFFS.values() if key in h.takes), None)
        if owner is None:
            raise TypeError(f"no hand-off takes the option {key!r}")
        if owner.takes[key] is not None and value not in (None, (), []):
            foreign.append(f"{owner.takes[key]} for mode {owner.name!r}, not {name!r}")
    handoff = cls(prefill, decode, **mine)
    if foreign:
        raise ValueError(foreign[0])
    return handoff


__all__ = ["HANDOFFS", "Handoff", "PrefillFirst", "StageError", "UnknownHandoffError", "Upstreams", "create", "get"]
