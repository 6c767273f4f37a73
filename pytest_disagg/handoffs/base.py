"""What a hand-off is: how the proxy carries one request from prefill to decode.

A hand-off is a class (registered by name in ``handoffs/__init__.py``) that owns everything the
proxy does differently for it: its ``--mode`` name, the proxy flags it reads and the medium ports
the pool passes as flags, its validation, what it starts with the proxy (a socket, a store
reader), and the stage transition itself (``transition``: prefill, then whatever makes the KV
reach decode, returning the body decode gets). The proxy owns the rest: routing, records, the
decode stream. One instance per proxy.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar, Mapping, Protocol


class StageError(Exception):
    """A stage (``prefill``, ``handoff``, ``decode``) failed; ``status`` is what the client gets."""

    def __init__(self, stage: str, status: int, message: str):
        super().__init__(message)
        self.stage, self.status, self.message = stage, status, message


def ms(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e6


def one_token(body: dict) -> dict:
    """The prefill request: same prompt, one output token, no streaming."""
    pre = dict(body)
    pre["max_tokens"] = 1
    if "max_completion_tokens" in pre:
        pre["max_completion_tokens"] = 1
    pre["stream"] = False
    pre.pop("stream_options", None)
    pre.pop("min_tokens", None)
    return pre


class Upstreams(Protocol):
    """What a hand-off may use of the proxy (``deploy.proxy.DisaggProxy``)."""

    prefill: list[str]
    fault: str                  # test-only: a broken hand-off on purpose ("none" otherwise)
    extra_delay_s: float        # test-only: added to the hand-off (or before decode when colocated)

    def pick(self, urls: list[str]) -> str: ...

    async def post_json(self, base: str, path: str, body: dict, stage: str) -> dict: ...


class Handoff:
    """Base of every hand-off; subclasses set ``name`` and implement ``transition``."""

    name: ClassVar[str]
    disaggregated: ClassVar[bool] = True
    # Medium port name -> the proxy flag that passes its number (the pool builds them).
    port_flags: ClassVar[Mapping[str, str]] = {}
    # Constructor options only this hand-off takes -> how an error names them when another
    # hand-off is given one ("--store-barrier is"); None: ignored elsewhere (a timeout's default).
    takes: ClassVar[Mapping[str, str | None]] = {}
    # Keys this hand-off adds to /disagg/stats (None there under every other hand-off).
    stats_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prefill: list[str], decode: list[str]):
        if self.disaggregated and (not prefill or not decode):
            raise ValueError(f"mode {self.name!r} needs --prefill and --decode")

    # --- proxy command line -----------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser) -> None:
        """Add the proxy flags this hand-off reads (an argument group of ``parser``)."""

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        """Constructor options (names in ``takes``) from the parsed command line."""
        return {}

    @classmethod
    def proxy_flags(cls, port_names, ports: Mapping[str, int]) -> list[str]:
        """The flags that hand the proxy the medium's ports this hand-off needs."""
        out: list[str] = []
        for name in port_names:
            if name in cls.port_flags:
                out += [cls.port_flags[name], str(ports[name])]
        return out

    # --- life with the proxy ----------------------------------------------------------------
    async def start(self) -> None:
        """Before the proxy answers /health."""

    async def close(self) -> None:
        """When the proxy stops."""

    def stats(self) -> dict:
        return {}

    # --- one request ------------------------------------------------------------------------
    async def transition(self, proxy: Upstreams, path: str, body: dict, record, t_start: int) -> dict:
        """Run the stages before decode (setting ``record.prefill_ms``/``handoff_ms``); return
        the body to send to decode. Failures raise :class:`StageError`."""
        raise NotImplementedError

    async def before_decode(self, proxy: Upstreams) -> None:
        """Just before the decode request, once its backend is picked."""


class PrefillFirst(Handoff):
    """Prefill with one output token, then ``hand_over``; ``handoff_ms`` runs from prefill's
    answer until decode may start (the hand-off's own waits and any test-only extra delay)."""

    def prepare(self, pre: dict) -> None:
        """Change the prefill request before it is sent."""

    async def hand_over(self, proxy: Upstreams, answer: dict, body: dict, decode_body: dict, record) -> None:
        """Make the KV reach decode; change ``decode_body`` as the hand-off needs."""

    async def transition(self, proxy: Upstreams, path: str, body: dict, record, t_start: int) -> dict:
        base = proxy.pick(proxy.prefill)
        pre = one_token(body)
        self.prepare(pre)
        answer = await proxy.post_json(base, path, pre, "prefill")
        t_prefilled = time.perf_counter_ns()
        record.prefill_ms = ms(t_start, t_prefilled)
        decode_body = dict(body)
        await self.hand_over(proxy, answer, body, decode_body, record)
        if proxy.extra_delay_s:
            await asyncio.sleep(proxy.extra_delay_s)
        record.handoff_ms = ms(t_prefilled, time.perf_counter_ns())
        return decode_body
