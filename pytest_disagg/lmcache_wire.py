"""LMCache's PD wire, shared by the ``lmcache-nixl`` medium (``mediums/lmcache.py``, the servers'
config files) and the ``lmcache_pd`` hand-off (``handoffs/lmcache_pd.py``, the proxy): the three
ports of a pair, the ``disagg_spec`` prefill is sent, and the "KV in place" message decode's sender
pushes. Below both, so neither imports the other (read from LMCache 0.5.2, see mediums/lmcache.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"

# Names of the extra ports the lmcache-nixl medium needs in ``MediumContext.peer_ports``: the
# decode server binds init (NIXL handshake) and alloc (buffer allocation); the proxy binds notify
# (LMCache's sender pushes "KV of request X is in place" there).
PD_PORT_NAMES = ("lmcache_pd_init", "lmcache_pd_alloc", "lmcache_pd_notify")


class LMCacheConfigError(ValueError):
    """A generated LMCache config that 0.5.2 would misread; names the key."""


@dataclass(frozen=True)
class PdPorts:
    """The three ports of one LMCache PD pair (see ``PD_PORT_NAMES``)."""

    init: int
    alloc: int
    notify: int

    @classmethod
    def from_context(cls, ctx) -> "PdPorts":
        """From a ``mediums.MediumContext``'s ``peer_ports`` (the ports the deployment allocated)."""
        missing = [name for name in PD_PORT_NAMES if name not in ctx.peer_ports]
        if missing:
            raise LMCacheConfigError(
                f"lmcache-nixl needs the deployment to allocate ports {', '.join(missing)} in "
                "MediumContext.peer_ports (the decode server binds init and alloc, the proxy binds "
                "notify); none can be derived from the per-role side-channel ports"
            )
        ports = cls(*(int(ctx.peer_ports[name]) for name in PD_PORT_NAMES))
        if len({ports.init, ports.alloc, ports.notify}) != 3:
            raise LMCacheConfigError(f"lmcache-nixl ports must differ, got {ports}")
        return ports


def disagg_spec(request_id: str, ports: PdPorts, host: str = HOST) -> dict[str, Any]:
    """What the proxy puts in the prefill request's ``kv_transfer_params["disagg_spec"]``.

    LMCache's vLLM adapter reads exactly these keys (``update_state_after_alloc``); the sender
    indexes the port lists by tensor-parallel rank and names the request ``req_id`` in its
    notification.
    """
    return {"req_id": request_id, "receiver_host": host,
            "receiver_init_port": [ports.init], "receiver_alloc_port": [ports.alloc]}


def notified_request(payload: bytes) -> str:
    """The request id in one LMCache PD "KV in place" message (what the proxy's PULL socket gets).

    LMCache 0.5.2 sends ``msgspec.msgpack.encode(ProxyNotif(req_id=...))``, a tagged struct, i.e.
    the map ``{"type": "ProxyNotif", "req_id": ...}``, once per tensor-parallel rank of the decode
    server, after the last chunk of the request has landed there.
    """
    import msgspec  # optional: a vLLM and LMCache dependency; only the lmcache_pd hand-off needs it

    try:
        message = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError as exc:
        raise LMCacheConfigError(f"LMCache PD notification is not msgpack: {exc}") from None
    if not isinstance(message, dict) or message.get("type") != "ProxyNotif" or not isinstance(message.get("req_id"), str):
        raise LMCacheConfigError(f"not an LMCache ProxyNotif message: {message!r}")
    return message["req_id"]
