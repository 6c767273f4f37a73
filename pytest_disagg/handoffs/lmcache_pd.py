"""``lmcache_pd`` (LMCache PD mode): prefill with ``max_tokens=1`` and a ``disagg_spec`` naming
decode's LMCache receiver ports; LMCache's sender pushes the KV into decode's buffer and then
sends "KV of request X is in place" to a ZMQ PULL socket the proxy binds (``--pd-notify-port``).
Decode gets the original request once every decode TP rank's message is in, and finds the KV as
a prefix hit; it computes every output token, so TTFT and TPOT mean what they mean for the other
hand-offs."""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Sequence

from .. import lmcache_wire
from .base import Handoff, StageError, Upstreams, ms, one_token

PD_NOTIFY_TIMEOUT_S = 30.0     # prefill's answer to the last "KV in place" message, at most


@dataclass
class _PdWaiter:
    req_id: str
    future: asyncio.Future          # resolves to perf_counter_ns of the last rank's message
    seen: int = 0


class PdNotifications:
    """LMCache PD "KV in place" messages, read from a ZMQ PULL socket and matched to requests.

    A request registers its waiter (``expect``) before prefill is sent — the message can beat
    prefill's HTTP answer — and drops it when it leaves the hand-off, whatever happened. A
    message nobody waits for (late after a timeout, one rank too many, unknown id) is counted
    and dropped, never kept; the reader never stops consuming, because LMCache's sender blocks
    once about 1,000 messages wait unread.
    """

    def __init__(self, notify_port: int, init_ports: Sequence[int], alloc_ports: Sequence[int],
                 host: str = lmcache_wire.HOST):
        if not init_ports or len(init_ports) != len(alloc_ports):
            raise ValueError("lmcache_pd needs one --pd-receiver-init-port and one --pd-receiver-alloc-port "
                             f"per decode TP rank, got init {list(init_ports)} and alloc {list(alloc_ports)}")
        if len({notify_port, *init_ports, *alloc_ports}) != 1 + 2 * len(init_ports):
            raise ValueError(f"lmcache_pd ports must all differ: notify {notify_port}, "
                             f"init {list(init_ports)}, alloc {list(alloc_ports)}")
        self.host, self.notify_port = host, notify_port
        self.init_ports, self.alloc_ports = list(init_ports), list(alloc_ports)
        self.ranks = len(self.init_ports)      # one message per TP rank (LMCache's example proxy)
        self._first_rank = lmcache_wire.PdPorts(init=init_ports[0], alloc=alloc_ports[0], notify=notify_port)
        self._waiters: dict[str, _PdWaiter] = {}
        self.received = self.matched = self.unmatched = self.malformed = self.timeouts = 0
        self.recent_unmatched: collections.deque[str] = collections.deque(maxlen=32)
        self.reader_error: str | None = None
        self._ctx = self._sock = self._task = None

    def disagg_spec(self, req_id: str) -> dict:
        """The prefill request's ``kv_transfer_params["disagg_spec"]``: every rank's ports."""
        spec = lmcache_wire.disagg_spec(req_id, self._first_rank, host=self.host)
        spec["receiver_init_port"], spec["receiver_alloc_port"] = list(self.init_ports), list(self.alloc_ports)
        return spec

    async def start(self) -> None:
        import zmq  # optional dependency: only this hand-off needs pyzmq (a vLLM dependency)
        import zmq.asyncio

        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(f"tcp://{self.host}:{self.notify_port}")
        except zmq.ZMQError:
            self._ctx.destroy(linger=0)
            self._ctx = self._sock = None
            raise
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
        self._ctx = self._sock = self._task = None

    async def _read(self) -> None:
        try:
            while True:
                self.deliver(await self._sock.recv())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket is gone: waiters time out, saying why
            self.reader_error = f"{type(exc).__name__}: {exc}"

    def deliver(self, payload: bytes) -> None:
        self.received += 1
        try:
            req_id = lmcache_wire.notified_request(payload)
        except ValueError:
            self.malformed += 1
            return
        waiter = self._waiters.get(req_id)
        if waiter is None or waiter.future.done():
            self.unmatched += 1
            self.recent_unmatched.append(req_id)
            return
        self.matched += 1
        waiter.seen += 1
        if waiter.seen >= self.ranks:
            waiter.future.set_result(time.perf_counter_ns())

    @contextlib.contextmanager
    def expect(self) -> Iterator[_PdWaiter]:
        """A fresh request id, waited for until the block ends."""
        waiter = _PdWaiter(req_id=f"pd-{uuid.uuid4().hex}", future=asyncio.get_running_loop().create_future())
        self._waiters[waiter.req_id] = waiter
        try:
            yield waiter
        finally:
            del self._waiters[waiter.req_id]

    async def wait(self, waiter: _PdWaiter, timeout_s: float) -> int:
        """perf_counter_ns when the last rank's message came; StageError("handoff", 504) if none."""
        try:
            return await asyncio.wait_for(waiter.future, timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            why = f"; the PULL socket's reader stopped: {self.reader_error}" if self.reader_error else ""
            raise StageError(
                "handoff", 504,
                f"no LMCache 'KV in place' message for {waiter.req_id} within {timeout_s:g} s of prefill's "
                f"answer ({waiter.seen} of {self.ranks} ranks) on {self.host}:{self.notify_port}{why}",
            ) from None

    def stats(self) -> dict:
        return {
            "notify": f"{self.host}:{self.notify_port}", "ranks": self.ranks, "received": self.received,
            "matched": self.matched, "unmatched": self.unmatched, "malformed": self.malformed,
            "timeouts": self.timeouts, "waiting": len(self._waiters),
            "recent_unmatched": list(self.recent_unmatched), "reader_error": self.reader_error,
        }


def _port_list(text: str) -> list[int]:
    """``"7300"`` or ``"7300,7301"`` (one port per TP rank)."""
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port or comma list of ports: {text!r}") from None


_PORTS = "--pd-* ports are"


class LmcachePd(Handoff):
    name = "lmcache_pd"
    port_flags = {
        "lmcache_pd_notify": "--pd-notify-port",
        "lmcache_pd_init": "--pd-receiver-init-port",
        "lmcache_pd_alloc": "--pd-receiver-alloc-port",
    }
    takes = {"pd_notify_port": _PORTS, "pd_init_ports": _PORTS, "pd_alloc_ports": _PORTS, "pd_timeout_s": None}
    stats_keys = ("lmcache_pd",)

    def __init__(self, prefill: list[str], decode: list[str], pd_notify_port: int | None = None,
                 pd_init_ports: Sequence[int] = (), pd_alloc_ports: Sequence[int] = (),
                 pd_timeout_s: float = PD_NOTIFY_TIMEOUT_S):
        super().__init__(prefill, decode)
        if pd_notify_port is None:
            raise ValueError("mode 'lmcache_pd' needs --pd-notify-port")
        if len(decode) != 1:
            raise ValueError("mode 'lmcache_pd' pushes KV to one receiver's ports: give exactly one --decode")
        self.pd = PdNotifications(pd_notify_port, pd_init_ports, pd_alloc_ports)
        self.timeout_s = pd_timeout_s

    @classmethod
    def add_arguments(cls, parser) -> None:
        pd = parser.add_argument_group("lmcache_pd", "LMCache PD mode (ports as in the LMCache config files)")
        pd.add_argument("--pd-notify-port", type=int, default=None,
                        help="port to bind a ZMQ PULL socket on for prefill's 'KV in place' messages (pd_proxy_port)")
        pd.add_argument("--pd-receiver-init-port", type=_port_list, action="append", default=[],
                        help="decode's pd_peer_init_port; repeat or comma-separate, one per TP rank")
        pd.add_argument("--pd-receiver-alloc-port", type=_port_list, action="append", default=[],
                        help="decode's pd_peer_alloc_port; repeat or comma-separate, one per TP rank")
        pd.add_argument("--pd-notify-timeout-s", type=float, default=PD_NOTIFY_TIMEOUT_S,
                        help="how long after prefill's answer the last 'KV in place' message may come (504 after)")

    @classmethod
    def options_from_args(cls, args) -> dict:
        return {"pd_notify_port": args.pd_notify_port,
                "pd_init_ports": [p for ports in args.pd_receiver_init_port for p in ports],
                "pd_alloc_ports": [p for ports in args.pd_receiver_alloc_port for p in ports],
                "pd_timeout_s": args.pd_notify_timeout_s}

    async def start(self) -> None:
        await self.pd.start()   # bound before /health answers (the pool waits for that)

    async def close(self) -> None:
        await self.pd.stop()

    def stats(self) -> dict:
        return {"lmcache_pd": self.pd.stats()}

    async def transition(self, proxy: Upstreams, path: str, body: dict, record, t_start: int) -> dict:
        """Prefill with a disagg_spec, then wait for LMCache's "KV in place" from every rank."""
        base = proxy.pick(proxy.prefill)
        pre = one_token(body)
        with self.pd.expect() as waiter:     # registered first: the message can beat the answer
            pre["kv_transfer_params"] = {"disagg_spec": self.pd.disagg_spec(waiter.req_id)}
            await proxy.post_json(base, path, pre, "prefill")
            t_prefilled = time.perf_counter_ns()
            record.prefill_ms = ms(t_start, t_prefilled)
            t_notified = await self.pd.wait(waiter, self.timeout_s)
        handoff_ns = max(0, t_notified - t_prefilled)
        if proxy.extra_delay_s:
            t0 = time.perf_counter_ns()
            await asyncio.sleep(proxy.extra_delay_s)
            handoff_ns += time.perf_counter_ns() - t0
        record.handoff_ms = handoff_ns / 1e6
        # The original request: decode finds the KV as a prefix hit and computes every output token.
        decode_body = dict(body)
        decode_body.pop("kv_transfer_params", None)
        return decode_body
