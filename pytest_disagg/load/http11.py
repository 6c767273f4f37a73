"""Keep-alive HTTP/1.1 connections that hand each received piece of a response to its exchange.

Why not aiohttp's client for the token stream: measured with benchmarks/client_overhead.py,
most of a streaming client's CPU per token went to aiohttp's reader machinery — per socket read
a protocol callback, a StreamReader feed, a future resolved, a task woken, ``readany`` and a
flow-control call per HTTP chunk — not to parsing. Here a socket read is one ``data_received``
call: llhttp (via ``httptools``, the parser uvicorn uses) decodes the status, headers and the
chunked transfer encoding in C and calls ``on_body`` with each piece, which goes straight to the
exchange (which reads the time of the read from its connection). No future or task per read;
the timestamp is taken by the first Python code that sees the bytes, which is also what keeps
the latency figures exact under load. aiohttp is still what the rest of the suite uses (scrapes, proxy records, the
fake server); this module is only the hot path, and only plain ``http://`` (deployments are
loopback).

One request at a time per connection; a :class:`ConnectionPool` keeps idle connections per
host and opens new ones when all are busy (no limit: the arrival process is the limit).
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httptools

_perf_ns = time.perf_counter_ns


class ProtocolError(Exception):
    """The server's bytes are not HTTP/1.1."""


class Exchange:
    """One request and its response on a :class:`Connection`. It is the llhttp parser's
    callback object itself (a fresh parser per request), so a body piece reaches
    :meth:`on_body` with no frame in between. Subclasses override :meth:`on_body`,
    :meth:`complete` and :meth:`failed`; ``conn.now`` is the time of the current read."""

    __slots__ = ("conn", "parser", "status", "headers")

    def __init__(self):
        self.conn: Connection | None = None
        self.parser = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        """A piece of the (de-chunked) body."""

    def on_message_complete(self) -> None:
        conn, self.conn = self.conn, None
        keep = self.parser.should_keep_alive()
        conn.exchange = None
        try:
            self.complete(conn.now)
        finally:
            conn.finish(keep)

    # for subclasses
    def complete(self, now_ns: int) -> None:
        """The whole response has arrived."""

    def failed(self, exc: BaseException, received: bool) -> None:
        """The exchange ended without a complete response (``received``: any byte came)."""


class Connection(asyncio.Protocol):
    """One TCP connection; feeds what it reads to the current exchange's parser."""

    __slots__ = ("transport", "exchange", "pool", "now", "received", "closed")

    def __init__(self, pool: "ConnectionPool"):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.now = 0
        self.received = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.now = _perf_ns()
        exchange = self.exchange
        if exchange is None:   # bytes nobody asked for: the connection is not in a known state
            self.close()
            return
        self.received = True
        try:
            exchange.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # The exchange's own error (e.g. a malformed chunk), wrapped by the parser.
            self._fail(exc.__context__ or exc)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"bad HTTP from the server: {exc}"))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            exchange.failed(exc or ConnectionResetError("the server closed the connection mid-response"),
                            self.received)

    # used by the client
    def request(self, raw: bytes, exchange: Exchange) -> None:
        exchange.conn = self
        exchange.parser = httptools.HttpResponseParser(exchange)
        self.exchange = exchange
        self.received = False
        self.transport.write(raw)

    def finish(self, keep_alive: bool) -> None:
        if keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.close()

    def abandon(self) -> None:
        """Drop the exchange in flight (timeout, cancel): the connection cannot be reused."""
        self.exchange = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        exchange, self.exchange = self.exchange, None
        self.close()
        if exchange is not None:
            exchange.failed(exc, self.received)


class ConnectionPool:
    """Idle keep-alive connections to one ``http://host:port``."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the streaming client speaks plain http:// only, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = f"{self.host}:{self.port}"
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()

    def idle(self) -> Connection | None:
        """An idle open connection, or None (then :meth:`connect`)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        self._all.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        self._idle.append(conn)

    def discard(self, conn: Connection) -> None:
        self._all.discard(conn)

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()


__all__ = ["Connection", "ConnectionPool", "Exchange", "ProtocolError"]
