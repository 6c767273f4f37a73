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
  decode gets the same prompt and loads the KV instead of computing it.
- ``none``: colocated engines; requests go to the backend with the fewest in flight.

Run: ``python -m pytest_disagg.deploy.proxy --mode kv_params --prefill URL --decode URL --port N``
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
import uuid
from dataclasses import asdict, dataclass, field

import aiohttp
from aiohttp import web

REMOTE_DECODE_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}
FAULTS = ("none", "swap-kv-params")
MAX_RECORDS = 200_000


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
    stage_failed: str | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)


def _ms(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e6


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


class DisaggProxy:
    def __init__(self, mode: str, prefill: list[str], decode: list[str], fault: str = "none",
                 extra_delay_ms: float = 0.0):
        if mode not in ("none", "kv_params", "storage"):
            raise ValueError(f"unknown mode {mode!r}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        if mode == "none" and not decode:
            raise ValueError("mode 'none' needs at least one --backend")
        if mode != "none" and (not prefill or not decode):
            raise ValueError(f"mode {mode!r} needs --prefill and --decode")
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
        app.router.add_post("/disagg/records/clear", self.clear_records)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30), auto_decompress=False
        )

    async def _close(self, app: web.Application) -> None:
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
        if self.extra_delay_s:
            await asyncio.sleep(self.extra_delay_s)
        record.handoff_ms = _ms(t_prefilled, time.perf_counter_ns())
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
        except aiohttp.ClientError as exc:
            if response is None:
                raise StageError("decode", 502, f"decode server unreachable: {type(exc).__name__}: {exc}") from None
            # Mid-stream failure: the client sees a truncated stream; the record says why.
            record.status, record.stage_failed = "error", "decode"
            record.error = f"decode stream broke: {type(exc).__name__}: {exc}"
        except ConnectionResetError as exc:  # the client went away
            record.status, record.stage_failed, record.error = "error", "client", f"client disconnected: {exc}"
        finally:
            self.in_flight[base] -= 1
        t_end = time.perf_counter_ns()
        record.decode_ms = _ms(t0, t_end)
        record.total_ms = _ms(t_start, t_end)
        assert response is not None
        return response


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="pytest-disagg's prefill/decode proxy")
    ap.add_argument("--mode", required=True, choices=["none", "kv_params", "storage"])
    ap.add_argument("--prefill", action="append", default=[], help="prefill server base URL (repeatable)")
    ap.add_argument("--decode", action="append", default=[], help="decode server base URL (repeatable)")
    ap.add_argument("--backend", action="append", default=[], help="colocated server base URL (mode none)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fault", default="none", choices=FAULTS, help="test-only: break the hand-off on purpose")
    ap.add_argument("--extra-delay-ms", type=float, default=0.0,
                    help="add this delay before decode (used to measure the regression gate's power)")
    args = ap.parse_args(argv)
    decode = args.decode + args.backend
    try:
        proxy = DisaggProxy(args.mode, args.prefill, decode, fault=args.fault, extra_delay_ms=args.extra_delay_ms)
    except ValueError as exc:
        ap.error(str(exc))
    web.run_app(proxy.app(), host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=2.0)


if __name__ == "__main__":
    main()
