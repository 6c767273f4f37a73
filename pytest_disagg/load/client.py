"""Async streaming client for OpenAI ``/v1/completions`` and ``/v1/chat/completions``.

Why it looks like this: the client's own CPU per streamed token is what limits how exactly a
busy client can timestamp tokens, so the hot path is as short as it can be (see http11.py for
why the connections are llhttp-driven protocols rather than aiohttp's reader): every socket
read is stamped once with ``perf_counter_ns`` where it is received, split into events by the
bytes SSE parser, and each event's JSON is decoded once by the json module's C scanner.
Everything a figure needs is kept as integers (nanoseconds) on a :class:`RequestRecord`;
figures are derived from it later (metrics.py).

Token counting: a chunk may carry more than one token. When the server lists them (vLLM's
``return_token_ids``, or logprobs) each chunk's tokens are counted; otherwise each token-bearing
chunk counts as one and ``usage.completion_tokens`` of the final chunk is the authority for the
request's output length. A count that disagrees with what was asked for (``ignore_eos`` makes
the length exact) fails the request rather than producing a wrong TPOT.

Nothing raises out of :meth:`StreamClient.send` except cancellation: an HTTP error, a malformed
chunk, a reset connection, a server dying mid-stream, a timeout — each becomes a failed record
with its reason and the stage where it happened (``connect``, ``http``, ``stream``, ``parse``,
``server``, ``response``, ``timeout``).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .http11 import Connection, ConnectionPool, Exchange, ProtocolError
from .sse import DONE, MalformedChunk, SSEError, SSEParser, decode_json
from .workload import RequestSpec

STAGES = ("connect", "http", "stream", "parse", "server", "response", "timeout")
_ERROR_BODY_BYTES = 2048
_perf_ns = time.perf_counter_ns


@dataclass
class RequestRecord:
    """What happened to one request. Times are ``perf_counter_ns`` values (one clock for the
    whole run); ``chunk_ns`` holds the arrival of every token-bearing chunk."""

    request_id: str
    prompt_tokens: int
    expected_output_tokens: int
    warmup: bool = False
    prefix_group: int | None = None
    scheduled_ns: int | None = None
    send_ns: int = 0
    end_ns: int = 0
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] | None = None      # tokens per chunk, when the server says
    output_tokens: int = 0
    status: str = "pending"                    # ok | failed | cancelled | not_sent
    stage: str | None = None
    error: str | None = None
    http_status: int | None = None
    proxy: dict | None = None                  # the proxy's stage record, joined on request_id

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    # Per-request figures, named and defined as ``vllm bench serve`` does (milliseconds).
    @property
    def ttft_ms(self) -> float | None:
        return (self.chunk_ns[0] - self.send_ns) / 1e6 if self.ok and self.chunk_ns else None

    @property
    def e2el_ms(self) -> float | None:
        """Send to the last token-bearing chunk (the usage chunk and [DONE] carry no token)."""
        return (self.chunk_ns[-1] - self.send_ns) / 1e6 if self.ok and self.chunk_ns else None

    @property
    def tpot_ms(self) -> float | None:
        """(E2EL − TTFT) / (output tokens − 1); None for one-token outputs."""
        if not self.ok or self.output_tokens < 2 or not self.chunk_ns:
            return None
        return (self.chunk_ns[-1] - self.chunk_ns[0]) / 1e6 / (self.output_tokens - 1)

    @property
    def itl_ms(self) -> list[float]:
        """Gaps between consecutive token-bearing chunks."""
        if not self.ok:
            return []
        c = self.chunk_ns
        return [(c[i] - c[i - 1]) / 1e6 for i in range(1, len(c))]

    @property
    def send_lag_ms(self) -> float | None:
        """How late the client sent the request against its schedule (client overload shows here)."""
        return None if self.scheduled_ns is None or not self.send_ns else (self.send_ns - self.scheduled_ns) / 1e6

    def fail(self, stage: str, error: str) -> "RequestRecord":
        self.status, self.stage, self.error = "failed", stage, error
        return self

    def to_json(self, t0_ns: int = 0) -> dict:
        """Times relative to ``t0_ns`` (the run's start), in integer nanoseconds."""
        def rel(t):
            return None if t is None or (t == 0 and t0_ns) else t - t0_ns
        return {
            "request_id": self.request_id, "prompt_tokens": self.prompt_tokens,
            "expected_output_tokens": self.expected_output_tokens, "output_tokens": self.output_tokens,
            "warmup": self.warmup, "prefix_group": self.prefix_group, "status": self.status,
            "stage": self.stage, "error": self.error, "http_status": self.http_status,
            "scheduled_ns": rel(self.scheduled_ns), "send_ns": rel(self.send_ns), "end_ns": rel(self.end_ns),
            "chunk_ns": [t - t0_ns for t in self.chunk_ns], "chunk_tokens": self.chunk_tokens,
            "proxy": self.proxy,
        }

    @classmethod
    def from_json(cls, data: dict) -> "RequestRecord":
        d = dict(data)
        for key in ("send_ns", "end_ns"):
            d[key] = d.get(key) or 0
        return cls(**d)


@dataclass(frozen=True)
class ClientOptions:
    """How requests are shaped. ``extra_body`` is merged into every request body."""

    endpoint: str = "completions"              # completions | chat
    request_timeout_s: float = 300.0
    return_token_ids: bool = False             # ask vLLM for token ids per chunk (exact counts)
    temperature: float | None = 0.0
    extra_body: tuple[tuple[str, Any], ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()


class StreamClient:
    """Sends :class:`RequestSpec` s to one OpenAI base URL over keep-alive connections."""

    def __init__(self, base_url: str, model: str, options: ClientOptions = ClientOptions()):
        if options.endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be completions or chat, got {options.endpoint!r}")
        self.pool = ConnectionPool(base_url)
        self.path = self.pool.prefix + ("/v1/completions" if options.endpoint == "completions"
                                        else "/v1/chat/completions")
        self.url = base_url.rstrip("/") + self.path[len(self.pool.prefix):]
        self.model = model
        self.options = options
        self.chat = options.endpoint == "chat"
        base: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                                "ignore_eos": True}
        if options.temperature is not None:
            base["temperature"] = options.temperature
        if options.return_token_ids:
            base["return_token_ids"] = True
        base.update(dict(options.extra_body))
        self._base = base
        extra = "".join(f"{k}: {v}\r\n" for k, v in options.extra_headers)
        self._head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.pool.host_header}\r\n"
                      f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{extra}").encode()

    def close(self) -> None:
        """Close every connection (idle or not)."""
        self.pool.close()

    def body(self, req: RequestSpec) -> bytes:
        """The request body. The chat API takes no token ids, so a chat prompt is the ids written
        as words (its token count is then the server's, reported in ``usage.prompt_tokens``)."""
        payload = dict(self._base)
        if self.chat:
            payload["messages"] = [{"role": "user", "content": " ".join(map(str, req.prompt))}]
            payload["max_completion_tokens"] = req.output_tokens
        else:
            payload["prompt"] = list(req.prompt)
        payload["max_tokens"] = req.output_tokens
        return json.dumps(payload, separators=(",", ":")).encode()

    def raw_request(self, request_id: str, body: bytes) -> bytes:
        """The HTTP/1.1 request bytes, with the ``X-Request-Id`` the proxy joins its records on."""
        return b"%sX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head, request_id.encode(), len(body), body)

    def record(self, req: RequestSpec, request_id: str, scheduled_ns: int | None = None) -> RequestRecord:
        """A record for a request not sent yet (the runner keeps it if the request never goes)."""
        return RequestRecord(request_id, len(req.prompt), req.output_tokens, req.warmup, req.prefix_group,
                             scheduled_ns, status="not_sent")

    async def send(self, req: RequestSpec, request_id: str, body: bytes | None = None,
                   scheduled_ns: int | None = None, record: RequestRecord | None = None) -> RequestRecord:
        """Send one request and stream its answer into ``record`` (a new one if None); always
        returns the record and never raises, except ``CancelledError`` — then the record, which
        the caller holds, says ``cancelled``."""
        rec = record if record is not None else self.record(req, request_id, scheduled_ns)
        rec.status = "pending"
        raw = self.raw_request(request_id, self.body(req) if body is None else body)
        loop = asyncio.get_running_loop()
        timeout = self.options.request_timeout_s
        exchange = _Exchange(self, rec, loop.create_future())
        conn = timer = None
        rec.send_ns = _perf_ns()
        try:
            conn = self.pool.idle() or await asyncio.wait_for(self.pool.connect(), timeout)
            conn.request(raw, exchange)
            left = timeout - (_perf_ns() - rec.send_ns) / 1e9
            timer = loop.call_later(max(left, 0.0), exchange.expire, conn)
            await exchange.done
        except asyncio.TimeoutError:
            rec.fail("timeout", f"could not connect to {self.pool.host_header} within {timeout:g} s")
        except OSError as exc:
            rec.fail("connect", f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            if conn is not None:
                conn.abandon()
            rec.status, rec.stage, rec.error = "cancelled", None, "cancelled (wall-time limit or interrupt)"
            raise
        except Exception as exc:  # a bug in our code or a surprise from a library: record, never raise
            if conn is not None:
                conn.abandon()
            rec.fail("connect" if conn is None else "stream", f"unexpected {type(exc).__name__}: {exc}")
        finally:
            if timer is not None:
                timer.cancel()
            if not rec.end_ns:
                rec.end_ns = _perf_ns()
        return rec


class _Exchange(Exchange):
    """One request's response as it streams in: SSE events -> token timestamps and counts.
    llhttp calls ``on_body`` from the connection's ``data_received``; ``done`` is set once,
    whatever happens."""

    __slots__ = ("client", "chat", "rec", "done", "error_body", "feed", "sse", "counts", "usage", "seen_done",
                 "finished")

    def __init__(self, client: StreamClient, rec: RequestRecord, done: asyncio.Future):
        super().__init__()
        self.client, self.chat, self.rec, self.done = client, client.chat, rec, done
        self.error_body = b""
        self.sse = SSEParser()
        self.feed = self.sse.feed_data
        self.counts: list[int] = []
        self.usage = None
        self.seen_done = False
        self.finished = False

    def on_headers_complete(self) -> None:
        self.status = self.rec.http_status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        if self.finished:
            return
        if self.status != 200:
            if len(self.error_body) < _ERROR_BODY_BYTES:
                self.error_body += data[:_ERROR_BODY_BYTES]
            return
        self._events(self.feed(data), self.conn.now)

    def _events(self, payloads: list[bytes], now: int) -> None:
        rec = self.rec
        for payload in payloads:
            if payload == DONE:
                self.seen_done = True
                continue
            obj = decode_json(payload)
            choices = obj.get("choices")
            if choices:
                c = choices[0]
                if not self.chat and type(c) is dict and "token_ids" not in c and c.get("logprobs") is None:
                    n = -1   # the usual completions chunk: one or more tokens, not listed
                else:
                    n = tokens_in(c, self.chat)
                if n:
                    rec.chunk_ns.append(now)
                    self.counts.append(n)
                elif n is None:
                    raise MalformedChunk(f"choice is not an object: {payload[:120]!r}")
            elif "error" in obj:
                err = obj["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                self._finish(now, "server", f"server error in stream after {len(rec.chunk_ns)} token chunks: {msg}")
                return
            u = obj.get("usage")
            if u:
                self.usage = u

    def complete(self, now: int) -> None:
        if self.finished:
            return
        rec = self.rec
        if self.status != 200:
            text = self.error_body.decode("utf-8", "replace").strip()
            self._finish(now, "http", f"HTTP {self.status}: {text}")
            return
        try:
            self._events([e.data for e in self.sse.close()], now)
        except (SSEError, MalformedChunk) as exc:
            self._finish(now, "parse", str(exc))
            return
        if self.finished:
            return
        if not self.seen_done:
            self._finish(now, "stream", f"stream ended without data: [DONE] after {len(rec.chunk_ns)} token chunks")
            return
        rec.end_ns = now
        settle(rec, self.counts, self.usage)
        self._finish(now)

    def failed(self, exc: BaseException, received: bool) -> None:
        if self.finished:
            return
        now = _perf_ns()
        if isinstance(exc, (MalformedChunk, SSEError)):
            self._finish(now, "parse", str(exc))
        elif isinstance(exc, ProtocolError):
            self._finish(now, "stream" if self.status else "http", str(exc))
        else:
            where = f" after {len(self.rec.chunk_ns)} token chunks" if self.status else " before any answer"
            self._finish(now, "stream" if received else "connect", f"{type(exc).__name__}{where}: {exc}")

    def expire(self, conn: Connection) -> None:
        """The request's time is up: give up on the connection too."""
        if self.finished:
            return
        conn.abandon()
        what = "the first token" if not self.rec.chunk_ns else f"token {len(self.rec.chunk_ns) + 1}"
        self._finish(_perf_ns(), "timeout",
                     f"no complete answer within {self.client.options.request_timeout_s:g} s (waiting for {what})")

    def _finish(self, now: int, stage: str | None = None, error: str | None = None) -> None:
        self.finished = True
        if stage is not None:
            self.rec.end_ns = now
            self.rec.fail(stage, error)
        if not self.done.done():
            self.done.set_result(None)


def tokens_in(choice, chat: bool) -> int | None:
    """Tokens in a choice: exact count if the server lists them, -1 for "one or more, not
    listed", 0 for none (a chat role announcement), None for a malformed choice."""
    if not isinstance(choice, dict):
        return None
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return len(ids)
    lp = choice.get("logprobs")
    if chat:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        if "role" in delta and not delta.get("content") and not delta.get("reasoning_content"):
            return 0
        if isinstance(lp, dict) and isinstance(lp.get("content"), list) and lp["content"]:
            return len(lp["content"])
        return -1
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list) and lp["tokens"]:
        return len(lp["tokens"])
    return -1


def settle(rec: RequestRecord, counts: list[int], usage) -> None:
    """Decide the output length and whether it is the one asked for. ``counts`` holds each
    token chunk's token count, -1 where the chunk did not list its tokens."""
    exact = -1 not in counts
    counted = sum(counts) if exact else len(counts)
    if exact and counts:
        rec.chunk_tokens = counts
    reported = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if reported is not None and (isinstance(reported, bool) or not isinstance(reported, int) or reported < 0):
        rec.fail("response", f"usage.completion_tokens is not a count: {reported!r}")
        return
    if reported is None:
        if not exact:
            rec.fail("response", "no usage in the stream and chunks do not list their tokens: "
                                 "the output length is unknown (send stream_options.include_usage)")
            return
        reported = counted
    elif exact and counts and reported != counted:
        rec.fail("response", f"chunks carried {counted} tokens but usage says {reported}")
        return
    elif not exact and reported < len(counts):
        rec.fail("response", f"{len(counts)} token chunks but usage says only {reported} tokens")
        return
    rec.output_tokens = reported
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0:
        rec.prompt_tokens = prompt   # the server's count is the one that cost compute
    if not rec.chunk_ns and reported:
        rec.fail("response", f"usage says {reported} tokens but no chunk carried one")
    elif reported != rec.expected_output_tokens:
        rec.fail("response", f"got {reported} output tokens, asked for exactly {rec.expected_output_tokens} "
                             "(is ignore_eos honoured? is max_model_len too small?)")
    else:
        rec.status = "ok"


__all__ = ["ClientOptions", "RequestRecord", "STAGES", "StreamClient"]
