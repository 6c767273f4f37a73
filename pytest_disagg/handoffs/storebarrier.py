"""Wait until prefill's KV has landed in a storage medium before decode looks for it.

Why: LMCache stores to its remote tiers (the fs connector, Redis) asynchronously: prefill answers
once the KV is staged in its CPU buffer, and the write to the file or to Redis lands later. A
decode request sent the moment prefill answers finds nothing, recomputes the whole prompt, and a
benchmark would time recomputation while calling it a transfer (seen on the lent H100: 0 of
16,000 tokens found at once, 15,999 three seconds later). So for those mediums the proxy waits,
between the stages, until the store has landed, and that wait is part of the hand-off time: it
is what the medium costs.

How it knows, without LMCache's keys: LMCache writes one object per chunk of ``chunk_tokens``
prompt tokens (the last, partial chunk too, with ``save_unfull_chunk``), and skips chunks it
already holds. The proxy counts the stored chunks (``.data`` files of the fs connector; the
``…metadata`` keys that Redis gets after each chunk's bytes) and expects, per request, the chunks
whose token prefix it has not sent before (when the prompt is token ids; otherwise every chunk of
the prompt, by its length). Decode goes once the count reaches the running total *and* every
store that was under way at that moment has finished: chunks land in any order, but LMCache
starts them in the order they were queued, so once a later request's chunk has landed, every
chunk of this request has at least started, and the ones still under way are among those seen
then (fs: ``.tmp`` files; Redis: ``kv_bytes`` keys without their ``metadata`` key). Where the
expectation is too high (a text prompt sharing a prefix with an earlier one, a store LMCache
dropped), the wait ends when nothing is being written and the count has not moved for
``quiet_s``, and after ``timeout_s`` at the latest; each request's record says which ended it.

Assumes every store goes through this proxy (a request sent to prefill directly adds chunks the
proxy does not expect, and a later wait may end early).
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

POLL_S = 0.005
QUIET_S = 0.25
TIMEOUT_S = 60.0
KINDS = ("fs", "redis")


class StoreBarrierError(ValueError):
    """A barrier spec that cannot be used."""


@dataclass(frozen=True)
class StoreCount:
    chunks: int                                 # chunks whose store has completed
    in_flight: frozenset[str] = frozenset()     # chunks whose store has visibly started, not ended

    @property
    def writing(self) -> bool:
        return bool(self.in_flight)


class ChunkCounter(Protocol):
    async def count(self) -> StoreCount: ...
    async def close(self) -> None: ...


class DirChunkCounter:
    """LMCache's fs connector: one ``<key>.data`` file per chunk, written as ``<key>.tmp`` and
    renamed (atomic), so a ``.data`` file is a complete chunk and a ``.tmp`` one a store under way."""

    def __init__(self, path: Path, done_suffix: str = ".data", partial_suffix: str = ".tmp"):
        self.path, self.done, self.partial = Path(path), done_suffix, partial_suffix

    def _scan(self) -> StoreCount:
        done, writing = 0, []
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if entry.name.endswith(self.done):
                        done += 1
                    elif entry.name.endswith(self.partial):
                        writing.append(entry.name[: -len(self.partial)])
        except FileNotFoundError:
            pass
        return StoreCount(done, frozenset(writing))

    async def count(self) -> StoreCount:
        return await asyncio.to_thread(self._scan)

    async def close(self) -> None:
        return None


class RedisChunkCounter:
    """LMCache's Redis connector: per chunk ``<key>kv_bytes`` and then ``<key>metadata`` (the
    one its lookups test), so a metadata key is a complete chunk, a kv_bytes key without one a
    store under way."""

    def __init__(self, address: str, done_suffix: str = "metadata", partial_suffix: str = "kv_bytes"):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise StoreBarrierError(f"redis address must be host:port, got {address!r}")
        self.host, self.port, self.done, self.partial = host, int(port), done_suffix, partial_suffix
        self._client = None

    async def count(self) -> StoreCount:
        if self._client is None:
            import redis.asyncio  # optional dependency: only the lmcache-cpu medium, which requires redis

            self._client = redis.asyncio.Redis(host=self.host, port=self.port)
        done, started = set(), set()
        async for raw in self._client.scan_iter(count=10_000):
            key = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            if key.endswith(self.done):
                done.add(key[: -len(self.done)])
            elif key.endswith(self.partial):
                started.add(key[: -len(self.partial)])
        return StoreCount(len(done), frozenset(started - done))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def parse_spec(spec: str) -> ChunkCounter:
    """``fs:/path/to/dir`` or ``redis:host:port``."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise StoreBarrierError(f"store barrier must be KIND:TARGET with KIND in {KINDS}, got {spec!r}")
    if kind == "fs":
        return DirChunkCounter(Path(target))
    if kind == "redis":
        return RedisChunkCounter(target)
    raise StoreBarrierError(f"unknown store barrier kind {kind!r}; known: {KINDS}")


def chunk_identities(token_ids: Sequence[int], chunk_tokens: int) -> list[bytes]:
    """One digest per chunk LMCache stores for this prompt: of the token prefix ending there
    (LMCache's chunk keys are prefix hashes, so equal prefixes give equal chunks)."""
    out, h = [], hashlib.blake2b(digest_size=16)
    for start in range(0, len(token_ids), chunk_tokens):
        h.update(b"".join(int(t).to_bytes(8, "little", signed=True) for t in token_ids[start:start + chunk_tokens]))
        out.append(h.copy().digest())
    return out


class StoreBarrier:
    """The running expectation of stored chunks and the wait for it (one per proxy)."""

    def __init__(self, counter: ChunkCounter, chunk_tokens: int, *, quiet_s: float = QUIET_S,
                 timeout_s: float = TIMEOUT_S, poll_s: float = POLL_S):
        if chunk_tokens < 1:
            raise StoreBarrierError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        self.counter, self.chunk_tokens = counter, chunk_tokens
        self.quiet_s, self.timeout_s, self.poll_s = quiet_s, timeout_s, poll_s
        self.seen: set[bytes] = set()
        self.expected: int | None = None    # stored chunks once every store so far has landed
        self.outcomes: dict[str, int] = {"complete": 0, "quiescent": 0, "timeout": 0}
        self._scan: asyncio.Future | None = None   # one read of the store shared by every waiter
        self._scanned_at = -math.inf

    async def _count(self) -> StoreCount:
        """The store's count, read at most once per ``poll_s`` however many requests wait (a
        batch of 64 would otherwise list the directory or scan Redis 64 times per poll)."""
        if self._scan is not None and (not self._scan.done() or time.monotonic() - self._scanned_at < self.poll_s):
            return await asyncio.shield(self._scan)
        self._scanned_at = time.monotonic()
        self._scan = asyncio.ensure_future(self.counter.count())
        return await asyncio.shield(self._scan)

    async def start(self) -> None:
        """Take the count already in the store (the proxy may start on a used directory)."""
        self.expected = (await self.counter.count()).chunks

    def expect(self, prompt_tokens: int, token_ids: Sequence[int] | None = None) -> int:
        """Add one prefill's chunks to the expectation; return the count its decode waits for.
        Call it when prefill has answered (its stores have been queued by then)."""
        assert self.expected is not None, "StoreBarrier.start() first"
        if token_ids is not None and len(token_ids) == prompt_tokens:
            new = [c for c in chunk_identities(token_ids, self.chunk_tokens) if c not in self.seen]
            self.seen.update(new)
            self.expected += len(new)
        else:
            self.expected += math.ceil(prompt_tokens / self.chunk_tokens)
        return self.expected

    async def wait(self, target: int) -> tuple[str, int]:
        """Wait until ``target`` chunks are stored and the stores under way then have ended;
        (how it ended, chunks stored then)."""
        t0 = time.monotonic()
        last, since = -1, t0
        pending: frozenset[str] | None = None     # stores under way when the count reached target
        while True:
            now_count = await self._count()
            now = time.monotonic()
            if pending is None and now_count.chunks >= target:
                pending = now_count.in_flight
            if pending is not None and not (pending & now_count.in_flight):
                outcome = "complete"
                break
            if pending is None and (now_count.chunks != last or now_count.writing):
                last, since = now_count.chunks, now
            elif pending is None and now - since >= self.quiet_s:
                outcome = "quiescent"
                # Chunks that never came (dropped, or held already): stop expecting them, or
                # every later request would wait the quiet period too.
                self.expected = max(now_count.chunks, (self.expected or 0) - (target - now_count.chunks))
                break
            if now - t0 >= self.timeout_s:
                outcome = "timeout"
                break
            await asyncio.sleep(self.poll_s)
        self.outcomes[outcome] += 1
        return outcome, now_count.chunks

    async def close(self) -> None:
        await self.counter.close()
