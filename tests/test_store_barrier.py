"""The storage hand-off's barrier: decode waits until prefill's asynchronous store has landed.

A fake LMCache-like store writes chunk files late (``.tmp`` then renamed to ``.data``, as
LMCache's fs connector does); a fake decode server records whether every chunk of its prompt was
in the store when it was asked. Without the barrier it is not (the race seen on the lent H100).
"""
from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pytest_disagg.handoffs import storebarrier as sb
from pytest_disagg.deploy.pool import DeploymentConfig, proxy_command
from pytest_disagg.deploy.proxy import DisaggProxy, build
from pytest_disagg.mediums import MediumContext, MediumRegistry

CHUNK = 4
#: Long enough that a process kept off the CPU for a while (a busy CI box) does not look like a
#: store gone quiet; "complete" never waits for it, so the tests that expect it stay fast.
QUIET_S = 5.0


class LateStore:
    """Stores each prompt's chunks ``delay_s`` after prefill answers, as LMCache's remote tiers
    do: chunks start in the order they were queued, ``workers`` at a time, and land out of order
    (a prompt's first chunk is slow, the others fast); a chunk it holds already is skipped
    (keyed by prefix, like LMCache)."""

    def __init__(self, path: Path, delay_s: float = 0.15, workers: int = 3):
        self.path, self.delay_s, self.workers = path, delay_s, workers
        self.tasks: list[asyncio.Task] = []
        self.queue: asyncio.Queue | None = None

    def key_files(self, tokens: list[int]) -> list[Path]:
        ids = sb.chunk_identities(tokens, CHUNK)
        return [self.path / f"{i.hex()}.data" for i in ids]

    def store_later(self, tokens: list[int]) -> None:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.workers_tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]
        self.tasks.append(asyncio.ensure_future(self._enqueue(tokens)))

    async def _enqueue(self, tokens: list[int]) -> None:
        await asyncio.sleep(self.delay_s)
        for i, final in enumerate(self.key_files(tokens)):
            await self.queue.put((final, 0.06 if i == 0 else 0.005))
        await self.queue.join()

    async def _worker(self) -> None:
        while True:
            final, seconds = await self.queue.get()
            if not final.exists():
                tmp = final.with_suffix(".tmp")
                tmp.write_bytes(b"kv" * 64)
                await asyncio.sleep(seconds)
                tmp.rename(final)
            self.queue.task_done()

    async def close(self) -> None:
        for t in getattr(self, "workers_tasks", []):
            t.cancel()


class _CompletionsApp:
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.complete)
        return app


class Prefill(_CompletionsApp):
    def __init__(self, store: LateStore):
        self.store = store

    async def complete(self, request: web.Request):
        body = await request.json()
        prompt = body["prompt"]
        n = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        if isinstance(prompt, list):
            self.store.store_later(prompt)
        else:
            self.store.store_later([hash(w) % 1000 for w in prompt.split()])
        return web.json_response({"choices": [{"text": "x"}], "usage": {"prompt_tokens": n, "completion_tokens": 1}})


class Decode(_CompletionsApp):
    """Notes, per request, how many of its prompt's chunks the store held when it arrived."""

    def __init__(self, store: LateStore):
        self.store = store
        self.found: list[tuple[int, int]] = []

    async def complete(self, request: web.Request):
        body = await request.json()
        files = self.store.key_files(body["prompt"]) if isinstance(body["prompt"], list) else []
        self.found.append((sum(f.exists() for f in files), len(files)))
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'data: {"choices": [{"text": "a"}]}\n\ndata: [DONE]\n\n')
        await resp.write_eof()
        return resp


async def _serve(tmp_path: Path, bodies: list[dict], barrier: sb.StoreBarrier | None, concurrent: bool = False):
    store = LateStore(tmp_path)
    pre, dec = Prefill(store), Decode(store)
    servers = [TestServer(pre.app()), TestServer(dec.app())]
    for s in servers:
        await s.start_server()
    urls = [str(s.make_url("")).rstrip("/") for s in servers]
    proxy = DisaggProxy("storage", [urls[0]], [urls[1]], store_barrier=barrier)
    client = TestClient(TestServer(proxy.app()))
    await client.start_server()
    try:
        async def one(i, body):
            resp = await client.post("/v1/completions", json=body, headers={"X-Request-Id": f"r{i}"})
            return resp.status, await resp.text()

        if concurrent:
            answers = await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        else:
            answers = [await one(i, b) for i, b in enumerate(bodies)]
        records = await (await client.get("/disagg/records")).json()
        stats = await (await client.get("/disagg/stats")).json()
        await asyncio.gather(*store.tasks)
    finally:
        await store.close()
        await client.close()
        for s in servers:
            await s.close()
    return answers, records, stats, dec.found


def _body(prompt) -> dict:
    return {"model": "m", "prompt": prompt, "max_tokens": 2, "stream": True}


def test_without_a_barrier_decode_runs_before_the_store_lands(tmp_path):
    """The race the barrier exists for (what LMCache's fs tier did on the lent H100)."""
    answers, _, _, found = asyncio.run(_serve(tmp_path, [_body(list(range(1, 11)))], None))
    assert answers[0][0] == 200
    assert found == [(0, 3)]


def test_decode_waits_until_every_chunk_of_its_prompt_is_stored(tmp_path):
    barrier = sb.StoreBarrier(sb.DirChunkCounter(tmp_path), CHUNK, quiet_s=QUIET_S, timeout_s=30)
    prompts = [list(range(1, 11)), list(range(100, 117)), list(range(200, 204))]
    answers, records, stats, found = asyncio.run(_serve(tmp_path, [_body(p) for p in prompts], barrier))
    assert [a[0] for a in answers] == [200] * 3
    assert found == [(3, 3), (5, 5), (1, 1)]
    assert [r["store_barrier"] for r in records] == ["complete"] * 3
    assert all(r["handoff_ms"] >= 150 for r in records), records   # the store's delay is hand-off time
    assert stats["store_barrier"] == {"complete": 3, "quiescent": 0, "timeout": 0}


def test_concurrent_requests_each_wait_for_their_own_chunks(tmp_path):
    barrier = sb.StoreBarrier(sb.DirChunkCounter(tmp_path), CHUNK, quiet_s=QUIET_S, timeout_s=30)
    prompts = [list(range(k * 50, k * 50 + 9)) for k in range(6)]
    _, records, _, found = asyncio.run(_serve(tmp_path, [_body(p) for p in prompts], barrier, concurrent=True))
    assert found == [(3, 3)] * 6
    assert {r["store_barrier"] for r in records} == {"complete"}


def test_a_prefix_already_stored_is_not_waited_for_again(tmp_path):
    """Same token prefix: LMCache stores no chunk twice, so the second request expects only the
    chunks of its new tail, and completes without the quiet period."""
    barrier = sb.StoreBarrier(sb.DirChunkCounter(tmp_path), CHUNK, quiet_s=5.0, timeout_s=10)
    shared = list(range(1, 9))
    _, records, _, found = asyncio.run(_serve(tmp_path, [_body(shared + [50, 51]), _body(shared + [60])], barrier))
    assert found == [(3, 3), (3, 3)]
    assert [r["store_barrier"] for r in records] == ["complete", "complete"]
    assert records[1]["handoff_ms"] < 5000


def test_text_prompts_sharing_a_prefix_end_on_quiet_not_on_timeout(tmp_path):
    """Text prompts: the proxy cannot tell shared chunks, expects too many, and stops waiting
    once the store has been quiet; the expectation drops by what never came."""
    barrier = sb.StoreBarrier(sb.DirChunkCounter(tmp_path), CHUNK, quiet_s=1.5, timeout_s=30)
    text = " ".join(f"w{i}" for i in range(8))
    answers, records, stats, _ = asyncio.run(_serve(tmp_path, [_body(text), _body(text), _body(" ".join(f"x{i}" for i in range(9)))], barrier))
    assert [a[0] for a in answers] == [200] * 3
    assert [r["store_barrier"] for r in records] == ["complete", "quiescent", "complete"]
    assert records[1]["handoff_ms"] < 25_000      # the quiet period ended it, well before the timeout


def test_a_store_that_never_finishes_ends_in_timeout(tmp_path):
    class Stuck:
        async def count(self):
            return sb.StoreCount(0, frozenset({"a"}))

        async def close(self):
            pass

    barrier = sb.StoreBarrier(Stuck(), CHUNK, quiet_s=0.05, timeout_s=0.3)

    async def go():
        await barrier.start()
        return await barrier.wait(barrier.expect(8, list(range(8))))

    assert asyncio.run(go()) == ("timeout", 0)
    assert barrier.outcomes["timeout"] == 1


def test_chunk_identities_follow_prefixes():
    a = sb.chunk_identities(list(range(10)), 4)
    b = sb.chunk_identities(list(range(8)) + [99], 4)
    assert len(a) == math.ceil(10 / 4) and len(b) == 3
    assert a[:2] == b[:2] and a[2] != b[2]
    assert sb.chunk_identities([5] + list(range(1, 8)), 4)[1] != a[1]   # a chunk's id depends on what precedes it
    assert sb.chunk_identities([], 4) == []


class FakeRedis:
    def __init__(self, keys):
        self.keys = keys

    async def scan_iter(self, count):
        for k in list(self.keys):
            yield k

    async def aclose(self):
        pass


def test_redis_counter_counts_metadata_keys_and_sees_puts_in_flight():
    counter = sb.RedisChunkCounter("127.0.0.1:6390")
    counter._client = FakeRedis([b"aakv_bytes", b"aametadata", b"bbkv_bytes", b"other"])
    assert asyncio.run(counter.count()) == sb.StoreCount(1, frozenset({"bb"}))
    counter._client = FakeRedis([b"aakv_bytes", b"aametadata"])
    assert asyncio.run(counter.count()) == sb.StoreCount(1, frozenset())


@pytest.mark.parametrize("spec, message", [
    ("fs", "KIND:TARGET"), ("nfs:/x", "unknown store barrier kind"), ("redis:nohost", "host:port"),
])
def test_bad_barrier_specs_are_refused_with_the_reason(spec, message):
    with pytest.raises(sb.StoreBarrierError, match=message):
        sb.parse_spec(spec)


def test_proxy_cli_refuses_a_barrier_outside_storage_mode(capsys):
    with pytest.raises(SystemExit):
        build(["--mode", "kv_params", "--prefill", "http://a", "--decode", "http://b", "--port", "1",
               "--store-barrier", "fs:/tmp/x"])
    assert "for mode 'storage'" in capsys.readouterr().err
    proxy, _ = build(["--mode", "storage", "--prefill", "http://a", "--decode", "http://b", "--port", "1",
                      "--store-barrier", "redis:127.0.0.1:7000", "--store-chunk-tokens", "128"])
    assert proxy.handoff.barrier.chunk_tokens == 128


@pytest.mark.parametrize("medium, want", [("lmcache-disk", "fs:"), ("lmcache-cpu", "redis:127.0.0.1:6399")])
def test_lmcache_storage_mediums_give_their_proxy_a_barrier(tmp_path, medium, want):
    registry = MediumRegistry()
    m = registry.get(medium)
    ctx = MediumContext(workdir=tmp_path, device="cuda", side_channel_port=0, services={"redis": "127.0.0.1:6399"})
    cmd = proxy_command(m, DeploymentConfig(medium=medium), [], 8000, {}, ctx)
    i = cmd.index("--store-barrier")
    assert cmd[i + 1].startswith(want) and cmd[cmd.index("--store-chunk-tokens") + 1] == "256"
    if medium == "lmcache-disk":
        assert cmd[i + 1] == f"fs:{tmp_path / 'lmcache-fs'}"
    for other in ("disk", "nixl-cpu", "lmcache-nixl"):
        assert "--store-barrier" not in proxy_command(registry.get(other), DeploymentConfig(medium=other), [], 8000,
                                                       {n: 1 for n in registry.get(other).ports}, ctx)


def test_redis_counter_against_a_real_redis_server(tmp_path):
    """The counter's view of LMCache's Redis layout, on a real server (skipped without one)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (Debian: apt-get install redis-server)")
    redis = pytest.importorskip("redis")
    from pytest_disagg.children import processes
    from pytest_disagg.deploy.services import start_redis

    addr, child = start_redis(tmp_path, tmp_path / "redis.log")
    try:
        host, port = addr.split(":")
        r = redis.Redis(host=host, port=int(port))
        r.set("k1kv_bytes", b"x" * 1000)
        r.set("k1metadata", b"m")
        r.set("k2kv_bytes", b"y" * 1000)          # a put under way: bytes in, metadata not yet

        async def count():
            counter = sb.parse_spec(f"redis:{addr}")
            try:
                return await counter.count()
            finally:
                await counter.close()

        assert asyncio.run(count()) == sb.StoreCount(1, frozenset({"k2"}))
        r.set("k2metadata", b"m")
        assert asyncio.run(count()) == sb.StoreCount(2, frozenset())
    finally:
        processes.stop(child)


def test_an_unreadable_store_fails_the_handoff_stage_with_the_reason(tmp_path):
    class Broken:
        calls = 0

        async def count(self):
            Broken.calls += 1
            if Broken.calls > 1:
                raise ConnectionError("redis went away")
            return sb.StoreCount(0)

        async def close(self):
            pass

    answers, records, _, found = asyncio.run(_serve(tmp_path, [_body([1, 2, 3])], sb.StoreBarrier(Broken(), CHUNK)))
    status, text = answers[0]
    assert status == 502 and "redis went away" in text
    assert records[0]["stage_failed"] == "handoff" and found == []   # decode never asked
