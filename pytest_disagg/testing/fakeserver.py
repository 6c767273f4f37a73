"""A minimal OpenAI-compatible streaming server with known timing and injectable faults.

Why: the client's own cost and accuracy can only be measured against a server whose timing is
known — no model, no batching noise. This server answers ``/v1/completions`` and
``/v1/chat/completions`` with ``stream: true`` like vLLM does (one chunk per token, a usage chunk,
``data: [DONE]``), sending the first token ``ttft`` after the request arrived and each further
token ``itl`` after the previous one, on an absolute schedule (no drift). It also serves
``/metrics`` (Prometheus text) and, optionally, the proxy's ``/disagg/records``, so the runner's
scrapes and joins can be tested without vLLM. It is loopback-only by default and is used by
``benchmarks/client_overhead.py``, by the tests, and by users checking their client set-up.

Timing: asyncio's timers wake up to a millisecond late (epoll's timeout is in ms), so one
scheduler task holds all due tokens in a heap, sleeps coarsely until ~1.5 ms before the next
deadline and then yields to the loop (``sleep(0)``) until it is due (``precise=True``). That
keeps emission within tens of microseconds of the schedule when the server has a core of its
own; the server records how late each token actually went out (``GET /fake/stats``), so a
client's error can be told apart from the server's.

Faults, per request (header ``X-Fake-Fault: <kind>[:<after_tokens>]``) or for every k-th
request (``fault_every``): ``http500``, ``malformed`` (a broken JSON chunk), ``drop`` (connection
aborted mid-stream), ``stall`` (stops sending, connection open), ``error_event`` (vLLM's in-stream
``{"error": ...}``), ``short`` (fewer tokens than asked), ``exit`` (the process dies mid-stream).
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import signal
import sys
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

FAULTS = ("none", "http500", "malformed", "drop", "stall", "error_event", "short", "exit")
SPIN_NS = 1_500_000       # yield-spin through the last 1.5 ms before a deadline (precise mode)


@dataclass(frozen=True)
class FakeServerConfig:
    ttft_s: float = 0.0
    itl_s: float = 0.0
    model: str = "fake-model"
    precise: bool = True          # spin before deadlines (needs a core of its own to be exact)
    fault: str = "none"
    fault_every: int = 0          # every k-th request gets ``fault`` (0: never)
    fault_after: int = 1          # tokens sent before the fault strikes
    records: bool = False         # serve /disagg/records like the proxy
    token_text: str = " a"

    def __post_init__(self):
        if self.ttft_s < 0 or self.itl_s < 0:
            raise ValueError(f"delays must be >= 0, got ttft_s={self.ttft_s} itl_s={self.itl_s}")
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {self.fault!r}")
        if self.fault_every < 0 or self.fault_after < 0:
            raise ValueError("fault_every and fault_after must be >= 0")


@dataclass
class _Stream:
    """One open streaming response and what is left to send."""

    resp: web.StreamResponse
    chunk: bytes            # a token chunk
    last: bytes             # the last token chunk (finish_reason)
    tail: bytes             # usage chunk + [DONE]
    remaining: int
    fault: str
    fault_after: int
    role: bytes = b""            # chat: the role chunk goes out with the first token
    sent: int = 0
    done: asyncio.Future | None = None


class FakeOpenAIServer:
    """The aiohttp application and its token scheduler."""

    def __init__(self, config: FakeServerConfig = FakeServerConfig()):
        self.config = config
        self.registry = CollectorRegistry()
        self.requests_total = Counter("fake:requests", "requests received", ["endpoint"], registry=self.registry)
        self.tokens_total = Counter("fake:generation_tokens", "tokens streamed", registry=self.registry)
        self.first_token_delay = Histogram("fake:first_token_delay_seconds", "scheduled wait before the first token",
                                           registry=self.registry)
        self._heap: list[tuple[int, int, _Stream]] = []
        self._seq = 0
        self._count = 0
        self._scheduler: asyncio.Task | None = None
        self._kick: asyncio.Event | None = None
        self.lateness_ns: list[int] = []
        self.records: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/fake/stats", self.stats)
        app.router.add_post("/fake/stats/reset", self.reset_stats)
        if self.config.records:
            app.router.add_get("/disagg/records", self.get_records)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._kick = asyncio.Event()
        self._scheduler = asyncio.get_running_loop().create_task(self._run())

    async def _stop(self, app: web.Application) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            try:
                await self._scheduler
            except asyncio.CancelledError:
                pass
        for _, _, stream in self._heap:
            if not stream.done.done():
                stream.done.set_result(None)

    # --- small endpoints ------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.config.model, "object": "model"}]})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def stats(self, request: web.Request) -> web.Response:
        late = sorted(self.lateness_ns)

        def pct(q: float) -> float | None:
            return late[min(len(late) - 1, int(q * len(late)))] / 1e3 if late else None
        return web.json_response({"tokens": len(late), "lateness_us_p50": pct(0.5), "lateness_us_p99": pct(0.99),
                                  "lateness_us_max": late[-1] / 1e3 if late else None})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.lateness_ns.clear()
        return web.json_response({"ok": True})

    async def get_records(self, request: web.Request) -> web.Response:
        return web.json_response(self.records)

    # --- the streaming endpoint -----------------------------------------------------------
    def _fault_for(self, request: web.Request) -> tuple[str, int]:
        header = request.headers.get("X-Fake-Fault")
        if header:
            kind, _, after = header.partition(":")
            return kind, int(after) if after else self.config.fault_after
        if self.config.fault_every and self._count % self.config.fault_every == 0:
            return self.config.fault, self.config.fault_after
        return "none", 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        t_arrived = time.perf_counter_ns()
        self._count += 1
        chat = request.path.endswith("/chat/completions")
        self.requests_total.labels("chat" if chat else "completions").inc()
        try:
            body = await request.json()
            n_out = int(body["max_tokens"])
            prompt_tokens = len(body["prompt"]) if not chat else sum(
                len(str(m.get("content", "")).split()) for m in body["messages"])
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": {"message": f"bad request: {exc!r}", "code": 400}}, status=400)
        rid = request.headers.get("X-Request-Id", f"fake-{self._count}")
        fault, after = self._fault_for(request)
        if fault not in FAULTS:
            return web.json_response({"error": {"message": f"unknown fault {fault!r}"}}, status=400)
        if self.config.records:
            self.records.append({"request_id": rid, "mode": "fake", "prefill_ms": self.config.ttft_s * 500.0,
                                 "handoff_ms": 0.25, "decode_first_byte_ms": self.config.ttft_s * 500.0,
                                 "status": "error" if fault != "none" else "ok",
                                 "stage_failed": "decode" if fault != "none" else None,
                                 "error": fault if fault != "none" else None})
        if fault == "http500":
            return web.json_response({"error": {"message": "injected failure", "code": 500}}, status=500)
        if not body.get("stream"):
            return web.json_response({"id": rid, "choices": [{"index": 0, "text": self.config.token_text * n_out,
                                                             "finish_reason": "length"}],
                                      "usage": _usage(prompt_tokens, n_out)})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        with_ids = bool(body.get("return_token_ids"))
        chunk, last, role = _token_chunks(rid, self.config.model, self.config.token_text, chat, with_ids)
        if fault == "short":
            n_out = max(0, min(after, n_out - 1))
        usage = (body.get("stream_options") or {}).get("include_usage")
        tail = (_data({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": 0,
                       "model": self.config.model, "choices": [], "usage": _usage(prompt_tokens, n_out)})
                if usage else b"") + b"data: [DONE]\n\n"
        self.first_token_delay.observe(self.config.ttft_s)
        stream = _Stream(resp, chunk, last, tail, n_out, fault, after, role=role or b"",
                         done=asyncio.get_running_loop().create_future())
        self._push(t_arrived + int(self.config.ttft_s * 1e9), stream)
        await stream.done
        if stream.fault == "stall":
            await asyncio.sleep(3600)
        if stream.fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return resp
        return resp

    def _push(self, deadline_ns: int, stream: _Stream) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline_ns, self._seq, stream))
        if self._kick is not None:
            self._kick.set()

    async def _run(self) -> None:
        """Emit every due token; between deadlines, sleep coarsely, then spin to the deadline."""
        heap, itl_ns, precise = self._heap, int(self.config.itl_s * 1e9), self.config.precise
        while True:
            if not heap:
                self._kick.clear()
                await self._kick.wait()
                continue
            now = time.perf_counter_ns()
            wait = heap[0][0] - now
            if wait > 0:
                if precise and wait <= SPIN_NS:
                    await asyncio.sleep(0)
                else:
                    self._kick.clear()
                    coarse = (wait - SPIN_NS) / 1e9 if precise else wait / 1e9
                    try:
                        await asyncio.wait_for(self._kick.wait(), min(coarse, 0.05))
                    except asyncio.TimeoutError:
                        pass
                continue
            while heap and heap[0][0] <= now:
                deadline, _, stream = heapq.heappop(heap)
                if await self._emit(stream, deadline):
                    self._seq += 1
                    heapq.heappush(heap, (deadline + itl_ns, self._seq, stream))
            await asyncio.sleep(0)

    async def _emit(self, stream: _Stream, deadline: int) -> bool:
        """Send one token (or finish); True when the stream has more tokens to send."""
        try:
            if stream.remaining == 0:
                await stream.resp.write(stream.tail)
                await stream.resp.write_eof()
                stream.done.set_result(None)
                return False
            if stream.fault not in ("none", "short") and stream.sent >= stream.fault_after:
                return await self._strike(stream)
            stream.remaining -= 1
            data = stream.last if stream.remaining == 0 else stream.chunk
            if stream.sent == 0 and stream.role:
                data = stream.role + data
            await stream.resp.write(data)
            self.lateness_ns.append(time.perf_counter_ns() - deadline)
            stream.sent += 1
            self.tokens_total.inc()
            return True
        except (ConnectionError, RuntimeError):  # the client went away
            if not stream.done.done():
                stream.done.set_result(None)
            return False

    async def _strike(self, stream: _Stream) -> bool:
        if stream.fault == "malformed":
            await stream.resp.write(b'data: {"choices": [{"text": "x"\n\n')
            await stream.resp.write(b"data: [DONE]\n\n")
            await stream.resp.write_eof()
        elif stream.fault == "error_event":
            await stream.resp.write(_data({"error": {"message": "injected engine failure", "type": "InternalServerError",
                                                     "code": 500}}))
            await stream.resp.write(b"data: [DONE]\n\n")
            await stream.resp.write_eof()
        elif stream.fault == "exit":
            os._exit(3)
        stream.done.set_result(None)   # drop: the handler aborts; stall: the handler sleeps
        return False


def _data(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}


def _token_chunks(rid: str, model: str, text: str, chat: bool, with_ids: bool) -> tuple[bytes, bytes, bytes | None]:
    """Byte templates shaped like vLLM's chunks: (token chunk, last token chunk, chat role chunk)."""
    def one(finish: str | None, delta: dict | None = None) -> bytes:
        if chat:
            choice = {"index": 0, "delta": delta if delta is not None else {"content": text}, "logprobs": None,
                      "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
            obj = "text_completion"
        if with_ids and (delta is None):
            choice["token_ids"] = [42]
        return _data({"id": rid, "object": obj, "created": 0, "model": model, "choices": [choice], "usage": None})
    role = one(None, {"role": "assistant", "content": ""}) if chat else None
    return one(None), one("length"), role


async def serve(config: FakeServerConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the server in the running loop; returns (runner to clean up, base URL)."""
    # handler_cancellation: a stalled or unfinished stream ends when its client goes away, and
    # cleanup does not wait for it.
    runner = web.AppRunner(FakeOpenAIServer(config).app(), access_log=None, handle_signals=False,
                           handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    return runner, f"http://{host}:{sock.getsockname()[1]}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="a fake OpenAI-compatible streaming server with known timing")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--itl-ms", type=float, default=0.0)
    ap.add_argument("--model", default="fake-model")
    ap.add_argument("--no-precise", action="store_true", help="no spinning before deadlines (ms-accurate only)")
    ap.add_argument("--fault", default="none", choices=FAULTS)
    ap.add_argument("--fault-every", type=int, default=0)
    ap.add_argument("--fault-after", type=int, default=1)
    ap.add_argument("--records", action="store_true", help="serve /disagg/records like the proxy")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU core")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop when it is installed")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    config = FakeServerConfig(ttft_s=args.ttft_ms / 1e3, itl_s=args.itl_ms / 1e3, model=args.model,
                              precise=not args.no_precise, fault=args.fault, fault_every=args.fault_every,
                              fault_after=args.fault_after, records=args.records)

    async def run() -> None:
        runner, url = await serve(config, args.host, args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"listening on {url}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    if args.uvloop:
        try:
            import uvloop   # optional dependency: the fast extra
            uvloop.run(run())
            return
        except ImportError:
            pass
    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1:])
