"""The disaggregation proxy: one OpenAI endpoint in front of prefill and decode servers.

Why our own (and not vLLM's example proxies): it is part of what is measured, so it must be a
known quantity — no global lock, hundreds of concurrent streams, a per-request record of where
the time went (prefill, hand-off, decode) and of which stage failed. It runs as its own process
so that its event loop never competes with the load generator's.

Hand-offs:
- ``kv_params`` (NixlConnector and the like): prefill with ``max_tokens=1`` and
  ``kv_transfer_params={"do_remote_decode": true, ...}``; the decode request carries the
  ``kv_transfer_params`` that prefill returned, and decode pulls the KV.
- ``storage`` (ExampleConnector, LMCache tiers): prefill with ``max_tokens=1`` stores the KV;
  decode gets the same prompt and loads the KV instead of computing it. Where the store lands
  after prefill answers (LMCache's remote tiers), ``--store-barrier`` makes decode wait for it
  (``storebarrier``); that wait is part of the hand-off time.
- ``lmcache_pd`` (LMCache PD mode): prefill with ``max_tokens=1`` and a ``disagg_spec`` naming
  decode's LMCache receiver ports; LMCache's sender pushes the KV into decode's buffer and then
  sends "KV of request X is in place" to a ZMQ PULL socket the proxy binds (``--pd-notify-port``).
  Decode gets the original request once every decode TP rank's message is in, and finds the KV
  as a prefix hit; it computes every output token, so TTFT and TPOT mean what they mean for the
  other hand-offs.
- ``none``: colocated engines; requests go to the backend with the fewest in flight.

Run: ``python -m pytest_disagg.deploy.proxy --mode kv_params --prefill URL --decode URL --port N``
(``lmcache_pd`` adds ``--pd-notify-port N --pd-receiver-init-port N --pd-receiver-alloc-port N``.)
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

import aiohttp
from aiohttp import web

from ..mediums import lmcache
from . import storebarrier

REMOTE_DECODE_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}
FAULTS = ("none", "swap-kv-params")
MODES = ("none", "kv_params", "storage", "lmcache_pd")
MAX_RECORDS = 200_000
STAGE_TIMEOUT_S = 300.0        # an upstream server that sends nothing for this long fails its stage
PD_NOTIFY_TIMEOUT_S = 30.0     # prefill's answer to the last "KV in place" message, at most


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


def _ms(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e6


def _token_ids(body: dict) -> list[int] | None:
    """The prompt as token ids, when the request gives it so (completions with ids)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    return None


def _one_token(body: dict) -> dict:
    """The prefill request: same prompt, one output token, no streaming."""
    pre = dict(body)
    pre["max_tokens"] = 1
    if "max_completion_tokens" in pre:
        pre["max_completion_tokens"] = 1
    pre["stream"] = False
    pre.pop("stream_options", None)
    pre.pop("min_tokens", None)
    return pre


class StageError(Exception):
    def __init__(self, stage: str, status: int, message: str):
        super().__init__(message)
        self.stage, self.status, self.message = stage, status, message


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
                 host: str = lmcache.HOST):
        if not init_ports or len(init_ports) != len(alloc_ports):
            raise ValueError("lmcache_pd needs one --pd-receiver-init-port and one --pd-receiver-alloc-port "
                             f"per decode TP rank, got init {list(init_ports)} and alloc {list(alloc_ports)}")
        if len({notify_port, *init_ports, *alloc_ports}) != 1 + 2 * len(init_ports):
            raise ValueError(f"lmcache_pd ports must all differ: notify {notify_port}, "
                             f"init {list(init_ports)}, alloc {list(alloc_ports)}")
        self.host, self.notify_port = host, notify_port
        self.init_ports, self.alloc_ports = list(init_ports), list(alloc_ports)
        self.ranks = len(self.init_ports)      # one message per TP rank (LMCache's example proxy)
        self._first_rank = lmcache.PdPorts(init=init_ports[0], alloc=alloc_ports[0], notify=notify_port)
        self._waiters: dict[str, _PdWaiter] = {}
        self.received = self.matched = self.unmatched = self.malformed = self.timeouts = 0
        self.recent_unmatched: collections.deque[str] = collections.deque(maxlen=32)
        self.reader_error: str | None = None
        self._ctx = self._sock = self._task = None

    def disagg_spec(self, req_id: str) -> dict:
        """The prefill request's ``kv_transfer_params["disagg_spec"]``: every rank's ports."""
        spec = lmcache.disagg_spec(req_id, self._first_rank, host=self.host)
        spec["receiver_init_port"], spec["receiver_alloc_port"] = list(self.init_ports), list(self.alloc_ports)
        return spec

    async def start(self) -> None:
        import zmq  # only this hand-off needs pyzmq (a vLLM dependency)
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
            req_id = lmcache.notified_request(payload)
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


class DisaggProxy:
    def __init__(self, mode: str, prefill: list[str], decode: list[str], fault: str = "none",
                 extra_delay_ms: float = 0.0, *, pd_notify_port: int | None = None,
                 pd_init_ports: Sequence[int] = (), pd_alloc_ports: Sequence[int] = (),
                 pd_timeout_s: float = PD_NOTIFY_TIMEOUT_S,
                 store_barrier: storebarrier.StoreBarrier | None = None,
                 stage_timeout_s: float = STAGE_TIMEOUT_S):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        if mode == "none" and not decode:
            raise ValueError("mode 'none' needs at least one --backend")
        if mode != "none" and (not prefill or not decode):
            raise ValueError(f"mode {mode!r} needs --prefill and --decode")
        self.pd: PdNotifications | None = None
        if mode == "lmcache_pd":
            if pd_notify_port is None:
                raise ValueError("mode 'lmcache_pd' needs --pd-notify-port")
            if len(decode) != 1:
                raise ValueError("mode 'lmcache_pd' pushes KV to one receiver's ports: give exactly one --decode")
            self.pd = PdNotifications(pd_notify_port, pd_init_ports, pd_alloc_ports)
        elif pd_notify_port is not None or pd_init_ports or pd_alloc_ports:
            raise ValueError(f"--pd-* ports are for mode 'lmcache_pd', not {mode!r}")
        self.pd_timeout_s = pd_timeout_s
        if not stage_timeout_s > 0:
            raise ValueError(f"--stage-timeout-s must be > 0, got {stage_timeout_s}")
        self.stage_timeout_s = stage_timeout_s
        if store_barrier is not None and mode != "storage":
            raise ValueError(f"--store-barrier is for mode 'storage', not {mode!r}")
        self.store_barrier = store_barrier
        self.mode, self.prefill, self.decode, self.fault = mode, prefill, decode, fault
        self.extra_delay_s = extra_delay_ms / 1000.0
        self.records: collections.deque[StageRecord] = collections.deque(maxlen=MAX_RECORDS)
        self.in_flight: dict[str, int] = {u: 0 for u in prefill + decode}
        self._previous_kv: dict | None = None
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
        if self.pd is not None:
            await self.pd.start()   # bound before /health answers (the pool waits for that)
        if self.store_barrier is not None:
            await self.store_barrier.start()
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
        if self.pd is not None:
            await self.pd.stop()
        if self.store_barrier is not None:
            await self.store_barrier.close()
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
        """Proxy-wide counters; for ``lmcache_pd`` the notification counts (unmatched ones too)."""
        return web.json_response({
            "mode": self.mode, "records": len(self.records), "in_flight": self.in_flight,
            "lmcache_pd": self.pd.stats() if self.pd is not None else None,
            "store_barrier": dict(self.store_barrier.outcomes) if self.store_barrier is not None else None,
        })

    async def clear_records(self, request: web.Request) -> web.Response:
        n = len(self.records)
        self.records.clear()
        return web.json_response({"cleared": n})

    # --- request path -----------------------------------------------------------------------
    def _pick(self, urls: list[str]) -> str:
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
            decode_body = body
            if self.mode != "none":
                decode_body = await self._prefill(request.path, body, record, t_start)
            return await self._stream_decode(request, decode_body, record, t_start)
        except StageError as exc:
            record.status, record.stage_failed, record.error = "error", exc.stage, exc.message
            record.total_ms = _ms(t_start, time.perf_counter_ns())
            return web.json_response(
                {"error": {"message": exc.message, "stage": exc.stage}},
                status=exc.status,
                headers={"X-Disagg-Stage": exc.stage},
            )

    async def _post_json(self, base: str, path: str, body: dict, stage: str) -> dict:
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

    async def _prefill(self, path: str, body: dict, record: StageRecord, t_start: int) -> dict:
        """Run the prefill stage; return the body to send to decode."""
        base = self._pick(self.prefill)
        pre = _one_token(body)
        if self.mode == "lmcache_pd":
            return await self._prefill_lmcache_pd(base, path, pre, body, record, t_start)
        if self.mode == "kv_params":
            pre["kv_transfer_params"] = dict(REMOTE_DECODE_PARAMS)
        answer = await self._post_json(base, path, pre, "prefill")
        t_prefilled = time.perf_counter_ns()
        record.prefill_ms = _ms(t_start, t_prefilled)
        decode_body = dict(body)
        if self.mode == "kv_params":
            kv = answer.get("kv_transfer_params")
            if not isinstance(kv, dict):
                raise StageError("handoff", 502, "prefill answered without kv_transfer_params")
            decode_body["kv_transfer_params"] = self._maybe_corrupt(kv)
        if self.store_barrier is not None:
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            prompt_tokens = usage.get("prompt_tokens")
            if not isinstance(prompt_tokens, int):
                raise StageError("handoff", 502, "prefill answered without usage.prompt_tokens: the store barrier "
                                 "cannot tell how many chunks to wait for")
            target = self.store_barrier.expect(prompt_tokens, _token_ids(body))
            try:
                record.store_barrier, _ = await self.store_barrier.wait(target)
            except Exception as exc:   # the store itself unreachable (Redis gone, directory removed)
                raise StageError("handoff", 502, f"store barrier could not read the store: "
                                 f"{type(exc).__name__}: {exc}") from None
        if self.extra_delay_s:
            await asyncio.sleep(self.extra_delay_s)
        record.handoff_ms = _ms(t_prefilled, time.perf_counter_ns())
        return decode_body

    async def _prefill_lmcache_pd(self, base: str, path: str, pre: dict, body: dict, record: StageRecord,
                                  t_start: int) -> dict:
        """Prefill with a disagg_spec, then wait for LMCache's "KV in place" from every rank."""
        assert self.pd is not None
        with self.pd.expect() as waiter:     # registered first: the message can beat the answer
            pre["kv_transfer_params"] = {"disagg_spec": self.pd.disagg_spec(waiter.req_id)}
            await self._post_json(base, path, pre, "prefill")
            t_prefilled = time.perf_counter_ns()
            record.prefill_ms = _ms(t_start, t_prefilled)
            t_notified = await self.pd.wait(waiter, self.pd_timeout_s)
        handoff_ns = max(0, t_notified - t_prefilled)
        if self.extra_delay_s:
            t0 = time.perf_counter_ns()
            await asyncio.sleep(self.extra_delay_s)
            handoff_ns += time.perf_counter_ns() - t0
        record.handoff_ms = handoff_ns / 1e6
        # The original request: decode finds the KV as a prefix hit and computes every output token.
        decode_body = dict(body)
        decode_body.pop("kv_transfer_params", None)
        return decode_body

    def _maybe_corrupt(self, kv: dict) -> dict:
        """Test-only fault: hand decode the previous request's KV (a broken hand-off)."""
        if self.fault != "swap-kv-params":
            return kv
        previous, self._previous_kv = self._previous_kv, kv
        return previous if previous is not None else kv

    async def _stream_decode(self, request: web.Request, body: dict, record: StageRecord, t_start: int):
        assert self.session is not None
        base = self._pick(self.decode)
        record.backend = base
        if self.mode == "none" and self.extra_delay_s:
            await asyncio.sleep(self.extra_delay_s)
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
                async for chunk in upstream.content.iter_any():
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


def _port_list(text: str) -> list[int]:
    """``"7300"`` or ``"7300,7301"`` (one port per TP rank)."""
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port or comma list of ports: {text!r}") from None


def build(argv: list[str] | None = None) -> tuple[DisaggProxy, argparse.Namespace]:
    """Parse the command line into a proxy (not started) and the parsed arguments."""
    ap = argparse.ArgumentParser(description="pytest-disagg's prefill/decode proxy")
    ap.add_argument("--mode", required=True, choices=MODES)
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
    pd = ap.add_argument_group("lmcache_pd", "LMCache PD mode (ports as in the LMCache config files)")
    pd.add_argument("--pd-notify-port", type=int, default=None,
                    help="port to bind a ZMQ PULL socket on for prefill's 'KV in place' messages (pd_proxy_port)")
    pd.add_argument("--pd-receiver-init-port", type=_port_list, action="append", default=[],
                    help="decode's pd_peer_init_port; repeat or comma-separate, one per TP rank")
    pd.add_argument("--pd-receiver-alloc-port", type=_port_list, action="append", default=[],
                    help="decode's pd_peer_alloc_port; repeat or comma-separate, one per TP rank")
    pd.add_argument("--pd-notify-timeout-s", type=float, default=PD_NOTIFY_TIMEOUT_S,
                    help="how long after prefill's answer the last 'KV in place' message may come (504 after)")
    sb = ap.add_argument_group("storage barrier", "wait for asynchronous stores before decode (LMCache tiers)")
    sb.add_argument("--store-barrier", default=None, metavar="fs:DIR|redis:HOST:PORT",
                    help="count stored chunks there and hold decode until this request's have landed")
    sb.add_argument("--store-chunk-tokens", type=int, default=256, help="tokens per stored chunk (LMCache chunk_size)")
    sb.add_argument("--store-quiet-s", type=float, default=storebarrier.QUIET_S,
                    help="end a wait once nothing was written for this long (chunks already held, or dropped)")
    sb.add_argument("--store-timeout-s", type=float, default=storebarrier.TIMEOUT_S, help="end a wait after this long")
    args = ap.parse_args(argv)
    decode = args.decode + args.backend
    try:
        barrier = None
        if args.store_barrier is not None:
            barrier = storebarrier.StoreBarrier(storebarrier.parse_spec(args.store_barrier), args.store_chunk_tokens,
                                                quiet_s=args.store_quiet_s, timeout_s=args.store_timeout_s)
        proxy = DisaggProxy(
            args.mode, args.prefill, decode, fault=args.fault, extra_delay_ms=args.extra_delay_ms,
            pd_notify_port=args.pd_notify_port,
            pd_init_ports=[p for ports in args.pd_receiver_init_port for p in ports],
            pd_alloc_ports=[p for ports in args.pd_receiver_alloc_port for p in ports],
            pd_timeout_s=args.pd_notify_timeout_s, store_barrier=barrier, stage_timeout_s=args.stage_timeout_s,
        )
    except ValueError as exc:
        ap.error(str(exc))
    return proxy, args


def main(argv: list[str] | None = None) -> None:
    proxy, args = build(argv)
    web.run_app(proxy.app(), host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=2.0)


if __name__ == "__main__":
    main()
