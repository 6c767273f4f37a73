"""The disaggregation proxy: one OpenAI endpoint in front of prefill and decode servers.

Why our own (and not vLLM's example proxies): it is part of what is measured, so it must be a
known quantity — no global lock, hundreds of concurrent streams, a per-request record of where
the time went (prefill, hand-off, decode) and of which stage failed. It runs as its own process
so that its event loop never competes with the load generator's.

Hand-offs (``none``, ``kv_params``, ``storage``, ``lmcache_pd``) are classes in ``handoffs/``,
chosen by ``--mode``: each owns its stage transition, its flags and its validation; this module
owns routing, the per-request records and the decode stream.

Run: ``python -m pytest_disagg.deploy.proxy --mode kv_params --prefill URL --decode URL --port N``
(``lmcache_pd`` adds ``--pd-notify-port N --pd-receiver-init-port N --pd-receiver-alloc-port N``.)
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from .. import handoffs
from ..handoffs.base import StageError, ms as _ms

FAULTS = ("none", "swap-kv-params")
MAX_RECORDS = 200_000
STAGE_TIMEOUT_S = 300.0        # an upstream server that sends nothing for this long fails its stage


@dataclass
class StageRecord:
    """Where one request's time went, as the proxy saw it (milliseconds)."""

    request_id: str
    mode: str
    backend: str = ""
    prefill_ms: float | None = None
    handoff_ms: float | None = None
    decode_first_byte_ms: float | None = None
    decode_ms: float | None = None
    total_ms: float | None = None
    status: str = "ok"
    store_barrier: str | None = None     # storage hand-off with a barrier: complete/quiescent/timeout
    stage_failed: str | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)


class DisaggProxy:
    """``mode`` names the hand-off (``handoffs.HANDOFFS``); ``handoff_options`` are its options
    (e.g. ``store_barrier=`` for ``storage``, ``pd_notify_port=`` for ``lmcache_pd``)."""

    def __init__(self, mode: str, prefill: list[str], decode: list[str], fault: str = "none",
                 extra_delay_ms: float = 0.0, *, extra_token_delay_ms: float = 0.0, extra_stream_delay_ms: float = 0.0,
                 stage_timeout_s: float = STAGE_TIMEOUT_S, **handoff_options):
        if mode not in handoffs.HANDOFFS:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(handoffs.HANDOFFS)}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        self.handoff = handoffs.create(mode, prefill, decode, handoff_options)
        if not stage_timeout_s > 0:
            raise ValueError(f"--stage-timeout-s must be > 0, got {stage_timeout_s}")
        self.stage_timeout_s = stage_timeout_s
        self.mode, self.prefill, self.decode, self.fault = mode, prefill, decode, fault
        self.extra_delay_s = extra_delay_ms / 1000.0
        for flag, value in (("--extra-token-delay-ms", extra_token_delay_ms),
                            ("--extra-stream-delay-ms", extra_stream_delay_ms)):
            if value < 0:
                raise ValueError(f"{flag} must be >= 0, got {value}")
        self.token_delay_s = extra_token_delay_ms / 1000.0
        self.stream_delay_s = extra_stream_delay_ms / 1000.0
        self.records: collections.deque[StageRecord] = collections.deque(maxlen=MAX_RECORDS)
        self.in_flight: dict[str, int] = {u: 0 for u in prefill + decode}
        self.session: aiohttp.ClientSession | None = None

    # --- app wiring -------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024**2)
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/disagg/records", self.get_records)
        app.router.add_get("/disagg/stats", self.get_stats)
        app.router.add_post("/disagg/records/clear", self.clear_records)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app: web.Application) -> None:
        await self.handoff.start()     # before /health answers (the pool waits for that)
        # A fresh loopback connection per upstream request: reusing keep-alive connections raced
        # uvicorn closing idle ones ("Server disconnected" under load), and a connect costs ~0.1 ms.
        connector = aiohttp.TCPConnector(limit=0, force_close=True, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            # A server that is gone or stuck (a NIXL peer lost mid-transfer, a KV load that never
            # ends) fails its stage after stage_timeout_s of silence instead of holding the request.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.stage_timeout_s),
        )

    async def _close(self, app: web.Application) -> None:
        await self.handoff.close()
        if self.session is not None:
            await self.session.close()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "mode": self.mode})

    async def models(self, request: web.Request) -> web.Response:
        assert self.session is not None
        async with self.session.get(self.decode[0] + "/v1/models") as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    async def get_records(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.records])

    async def get_stats(self, request: web.Request) -> web.Response:
        """Proxy-wide counters and the hand-off's own (e.g. ``lmcache_pd``'s notification counts);
        every hand-off's keys are there, None under the others."""
        stats = {"mode": self.mode, "records": len(self.records), "in_flight": self.in_flight}
        stats.update({key: None for h in handoffs.HANDOFFS.values() for key in h.stats_keys})
        stats.update(self.handoff.stats())
        return web.json_response(stats)

    async def clear_records(self, request: web.Request) -> web.Response:
        n = len(self.records)
        self.records.clear()
        return web.json_response({"cleared": n})

    # --- request path -----------------------------------------------------------------------
    def pick(self, urls: list[str]) -> str:
        return min(urls, key=lambda u: self.in_flight[u])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        t_start = time.perf_counter_ns()
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        record = StageRecord(request_id=rid, mode=self.mode)
        self.records.append(record)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("request body is not a JSON object")
        except (ValueError, json.JSONDecodeError) as exc:
            record.status, record.stage_failed, record.error = "error", "proxy", f"bad request body: {exc}"
            return web.json_response({"error": {"message": record.error, "stage": "proxy"}}, status=400)
        try:
            decode_body = await self.handoff.transition(self, request.path, body, record, t_start)
            return await self._stream_decode(request, decode_body, record, t_start)
        except StageError as exc:
            record.status, record.stage_failed, record.error = "error", exc.stage, exc.message
            record.total_ms = _ms(t_start, time.perf_counter_ns())
            return web.json_response(
                {"error": {"message": exc.message, "stage": exc.stage}},
                status=exc.status,
                headers={"X-Disagg-Stage": exc.stage},
            )

    async def post_json(self, base: str, path: str, body: dict, stage: str) -> dict:
        assert self.session is not None
        self.in_flight[base] += 1
        try:
            async with self.session.post(base + path, json=body) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise StageError(stage, resp.status, f"{stage} server answered {resp.status}: {raw[:500]!r}")
        except asyncio.TimeoutError:        # aiohttp's ServerTimeoutError is one
            raise StageError(stage, 504, f"{stage} server sent nothing for {self.stage_timeout_s:g} s "
                                         "(--stage-timeout-s)") from None
        except aiohttp.ClientError as exc:
            raise StageError(stage, 502, f"{stage} server unreachable: {type(exc).__name__}: {exc}") from None
        finally:
            self.in_flight[base] -= 1
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StageError(stage, 502, f"{stage} server sent invalid JSON: {exc}") from None

    async def _stream_decode(self, request: web.Request, body: dict, record: StageRecord, t_start: int):
        assert self.session is not None
        base = self.pick(self.decode)
        record.backend = base
        await self.handoff.before_decode(self)
        t0 = time.perf_counter_ns()
        self.in_flight[base] += 1
        response: web.StreamResponse | None = None
        try:
            async with self.session.post(base + request.path, json=body) as upstream:
                if upstream.status != 200:
                    raw = await upstream.read()
                    raise StageError("decode", upstream.status, f"decode server answered {upstream.status}: {raw[:500]!r}")
                response = web.StreamResponse(status=200, headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")})
                await response.prepare(request)
                first = True
                chunks = upstream.content.iter_any()
                if self.token_delay_s or self.stream_delay_s:
                    chunks = paced_events(chunks, self.token_delay_s, first_s=self.stream_delay_s)
                async for chunk in chunks:
                    if first:
                        record.decode_first_byte_ms = _ms(t0, time.perf_counter_ns())
                        first = False
                    await response.write(chunk)
                await response.write_eof()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            stalled = isinstance(exc, asyncio.TimeoutError)
            if response is None:
                if stalled:
                    raise StageError("decode", 504, f"decode server sent nothing for {self.stage_timeout_s:g} s "
                                                    "(--stage-timeout-s)") from None
                raise StageError("decode", 502, f"decode server unreachable: {type(exc).__name__}: {exc}") from None
            # Mid-stream failure: the client sees a truncated stream; the record says why.
            record.status, record.stage_failed = "error", "decode"
            record.error = (f"decode stream stalled: nothing for {self.stage_timeout_s:g} s (--stage-timeout-s)"
                            if stalled else f"decode stream broke: {type(exc).__name__}: {exc}")
        except ConnectionResetError as exc:  # the client went away
            record.status, record.stage_failed, record.error = "error", "client", f"client disconnected: {exc}"
        finally:
            self.in_flight[base] -= 1
        t_end = time.perf_counter_ns()
        record.decode_ms = _ms(t0, t_end)
        record.total_ms = _ms(t_start, t_end)
        assert response is not None
        return response


async def paced_events(chunks: AsyncIterator[bytes], delay_s: float, *, first_s: float = 0.0, clock=time.perf_counter,
                       sleep=asyncio.sleep) -> AsyncIterator[bytes]:
    """The stream's server-sent events, event k (from 0) released ``first_s + k * delay_s`` after it
    arrived: every gap between streamed tokens longer by ``delay_s`` (TPOT rises by exactly that),
    and the whole stream later by ``first_s`` (TTFT rises by exactly that). Test-only: known
    regressions for the A/B rule's power (``benchmarks/ab_power.py``). Why a TTFT delay on the way
    out as well as ``--extra-delay-ms`` before decode: on an H100 serving four 16k prompts at once,
    37 ms held before the engine moved TTFT by 2.6 % where 5 % was meant (the engine's own wait
    before the first prefill absorbed most of it); after the engine, nothing can absorb it. A reader task stamps each chunk as it arrives: stamped
    when the pacer got to it, a late event would push every later one further (the delay compounding)."""
    queue: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        try:
            async for chunk in chunks:
                queue.put_nowait((clock(), chunk))
        finally:
            queue.put_nowait((None, b""))

    reader = asyncio.ensure_future(read())
    buf, k = b"", 0
    try:
        while True:
            arrived, chunk = await queue.get()
            if arrived is None:
                break
            buf += chunk
            while (end := buf.find(b"\n\n")) >= 0:
                event, buf = buf[:end + 2], buf[end + 2:]
                wait = arrived + first_s + k * delay_s - clock()
                if wait > 0:
                    await sleep(wait)
                k += 1
                yield event
        await reader                    # re-raises the upstream's error (a broken stream)
        if buf:
            yield buf
    finally:
        reader.cancel()


def build(argv: list[str] | None = None) -> tuple[DisaggProxy, argparse.Namespace]:
    """Parse the command line into a proxy (not started) and the parsed arguments."""
    ap = argparse.ArgumentParser(description="pytest-disagg's prefill/decode proxy")
    ap.add_argument("--mode", required=True, choices=list(handoffs.HANDOFFS))
    ap.add_argument("--prefill", action="append", default=[], help="prefill server base URL (repeatable)")
    ap.add_argument("--decode", action="append", default=[], help="decode server base URL (repeatable)")
    ap.add_argument("--backend", action="append", default=[], help="colocated server base URL (mode none)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fault", default="none", choices=FAULTS, help="test-only: break the hand-off on purpose")
    ap.add_argument("--stage-timeout-s", type=float, default=STAGE_TIMEOUT_S,
                    help="fail a stage (504) when its server sends nothing for this long")
    ap.add_argument("--extra-delay-ms", type=float, default=0.0,
                    help="add this delay before decode (used to measure the regression gate's power)")
    ap.add_argument("--extra-token-delay-ms", type=float, default=0.0,
                    help="test-only: lengthen every gap between streamed tokens by this (a known TPOT regression)")
    ap.add_argument("--extra-stream-delay-ms", type=float, default=0.0,
                    help="test-only: hold the whole decode stream back by this (a known TTFT regression after the engine)")
    for handoff in handoffs.HANDOFFS.values():
        handoff.add_arguments(ap)
    args = ap.parse_args(argv)
    decode = args.decode + args.backend
    try:
        options = {}
        for handoff in handoffs.HANDOFFS.values():
            options.update(handoff.options_from_args(args))
        proxy = DisaggProxy(args.mode, args.prefill, decode, fault=args.fault, extra_delay_ms=args.extra_delay_ms,
                            extra_token_delay_ms=args.extra_token_delay_ms,
                            extra_stream_delay_ms=args.extra_stream_delay_ms, stage_timeout_s=args.stage_timeout_s, **options)
    except ValueError as exc:
        ap.error(str(exc))
    return proxy, args


def main(argv: list[str] | None = None) -> None:
    proxy, args = build(argv)
    web.run_app(proxy.app(), host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=2.0)


if __name__ == "__main__":
    main()
