"""Incremental Server-Sent Events parser for OpenAI-style streaming responses: bytes in, events out.

Why our own and not a line-splitting loop inside the client: the network hands us reads that cut
the stream anywhere — inside a ``data:`` line, between the CR and LF of a CRLF, inside a UTF-8
sequence — and the latency figures are only right if every event is seen exactly once, when its
last byte arrived. This parser keeps the unfinished tail between ``feed`` calls, follows the
WHATWG event-stream rules (LF, CR or CRLF line ends; ``:`` comments; ``data``/``event``/``id``/
``retry`` fields; multi-line ``data``), and works on bytes so that the hot path does no decoding.

Bad input never hangs and never yields a wrong event: an event larger than ``max_event_bytes``
raises :class:`SSEError` (a server that streams garbage without blank lines would otherwise grow
the buffer forever); an event cut off by the end of the stream is reported by :meth:`close`.
JSON is not this module's job, except :func:`decode_json`, which turns a ``data`` payload into a
dict or a :class:`MalformedChunk` that says what was wrong.
"""
from __future__ import annotations

import json
import json.decoder
import json.scanner
from typing import NamedTuple

DONE = b"[DONE]"
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream is not a well-formed event stream (or an event is too large)."""


class MalformedChunk(ValueError):
    """A ``data`` payload that is not the JSON object the OpenAI stream promises."""


class SSEEvent(NamedTuple):
    """One dispatched event. ``data`` is the raw payload (multi-line data joined by LF)."""

    data: bytes
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events completed by those bytes.

    >>> p = SSEParser()
    >>> p.feed(b'data: {"a"')
    []
    >>> p.feed(b': 1}\\r\\n\\r\\ndata: [DONE]\\n\\n')
    [SSEEvent(data=b'{"a": 1}', event='message', id=None), SSEEvent(data=b'[DONE]', event='message', id=None)]
    """

    __slots__ = ("_buf", "_pending_cr", "_max", "last_id", "retry_ms", "_closed")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES):
        if max_event_bytes <= 0:
            raise ValueError(f"max_event_bytes must be positive, got {max_event_bytes}")
        self._buf = b""
        self._pending_cr = False
        self._max = max_event_bytes
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._closed = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add bytes; return the events whose terminating blank line is now complete."""
        events = []
        for block in self._blocks(data):
            if block.startswith(b"data: ") and b"\n" not in block:  # fast path: one data line
                events.append(SSEEvent(block[6:], "message", self.last_id))
                continue
            event = self._block(block)
            if event is not None:
                events.append(event)
        return events

    def feed_data(self, data: bytes) -> list[bytes]:
        """Like :meth:`feed`, but only the events' payloads (the streaming client's hot path:
        OpenAI streams use neither event types nor ids)."""
        if (not self._buf and not self._pending_cr and data.endswith(b"\n\n") and not data.endswith(b"\n\n\n")
                and b"\r" not in data and len(data) <= self._max and not self._closed):
            # Whole events and nothing pending (the usual read): the same blocks as _blocks gives.
            blocks = data[:-2].split(b"\n\n")
        else:
            blocks = self._blocks(data)
        out = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append(block[6:])
                continue
            event = self._block(block)
            if event is not None:
                out.append(event.data)
        return out

    def _blocks(self, data: bytes) -> list[bytes]:
        """Complete event blocks (lines joined by LF, line ends normalised); keeps the rest."""
        if self._closed:
            raise SSEError("feed() after close()")
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            # A CR at the end of a read may be the first half of a CRLF: decide on the next read.
            data = data[:-1]
            self._pending_cr = True
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf + data if self._buf else data
        if b"\n\n" not in buf:
            self._check_size(buf)
            self._buf = buf
            return []
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        self._check_size(self._buf)
        for block in blocks:
            if len(block) > self._max:
                self._check_size(block)
        return blocks

    def close(self) -> list[SSEEvent]:
        """End of stream: the events still pending. An event whose last line is complete but
        that lacks the closing blank line is dispatched (some servers omit it); a stream that
        stops in the middle of a line raises :class:`SSEError` — a truncated stream is not a
        short one."""
        if self._closed:
            return []
        self._closed = True
        tail = self._buf + (b"\n" if self._pending_cr else b"")
        self._buf, self._pending_cr = b"", False
        if not tail:
            return []
        if not tail.endswith(b"\n"):
            raise SSEError(f"stream ended in the middle of a line: {_preview(tail)}")
        event = self._block(tail)
        return [] if event is None else [event]

    def _check_size(self, pending: bytes) -> None:
        if len(pending) > self._max:
            raise SSEError(f"event larger than {self._max} bytes without a blank line: {_preview(pending)}")

    def _block(self, block: bytes) -> SSEEvent | None:
        """Process one event block (its lines, LF-separated) per the WHATWG rules."""
        data: list[bytes] = []
        event = "message"
        seen_data = False
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            name, sep, value = line.partition(b":")
            if sep and value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
                seen_data = True
            elif name == b"event":
                event = value.decode("utf-8", "replace") or "message"
            elif name == b"id":
                if b"\0" not in value:
                    self.last_id = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():
                    self.retry_ms = int(value)
            # Unknown field names are ignored, as the standard says.
        if not seen_data:
            return None
        return SSEEvent(b"\n".join(data), event, self.last_id)


def decode_json(payload: bytes) -> dict:
    """A ``data`` payload as a JSON object, or :class:`MalformedChunk` naming what is wrong.

    Calls the json module's C scanner directly: ``json.loads`` on bytes spends more time
    guessing the encoding and in its Python wrappers than in parsing a 200-byte chunk, and this
    runs once per streamed token. The result is the same as ``json.loads``; trailing garbage
    and anything but an object are errors."""
    try:
        text = payload.decode("utf-8")
        if text[:1] != "{":
            text = text.strip(_JSON_WS)
            if text[:1] != "{":
                raise MalformedChunk(f"chunk is not a JSON object: {_preview(payload)}")
        value, end = _scan_once(text, 0)
    except MalformedChunk:
        raise
    except UnicodeDecodeError as exc:
        raise MalformedChunk(f"chunk is not UTF-8 ({exc.reason} at byte {exc.start}): {_preview(payload)}") from None
    except StopIteration as exc:
        raise MalformedChunk(f"chunk is not valid JSON (at char {exc.value}): {_preview(payload)}") from None
    except ValueError as exc:  # JSONDecodeError
        raise MalformedChunk(f"chunk is not valid JSON ({exc}): {_preview(payload)}") from None
    except RecursionError:
        raise MalformedChunk(f"chunk nests too deeply: {_preview(payload)}") from None
    if end != len(text) and text[end:].strip(_JSON_WS):
        raise MalformedChunk(f"chunk has data after its JSON object (at char {end}): {_preview(payload)}")
    return value


_JSON_WS = " \t\n\r"
_scan_once = json.scanner.make_scanner(json.decoder.JSONDecoder())


def _preview(raw: bytes, limit: int = 120) -> str:
    text = raw[:limit].decode("utf-8", "replace")
    return repr(text) + ("..." if len(raw) > limit else "")


__all__ = ["DONE", "MalformedChunk", "SSEError", "SSEEvent", "SSEParser", "decode_json"]
