"""The proxy's ``lmcache_pd`` hand-off against fake vLLM servers and a fake LMCache sender.

The fake sender does what LMCache 0.5.2's PD sender does once a request's KV is in decode's
buffer: it pushes ``msgspec.msgpack.encode(ProxyNotif(req_id=...))`` over ZMQ PUSH to the proxy's
notify port, once per TP rank. Loopback only; every wait is bounded.
"""
from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest
import zmq
import zmq.asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_proxy import BODY, FakeVllm

from pytest_disagg.deploy.pool import DeploymentConfig, deployment_ports, proxy_command
from pytest_disagg.deploy.proxy import DisaggProxy, build
from pytest_disagg.deploy.server import ServerHandle, free_port
from pytest_disagg.mediums import MediumContext, MediumRegistry
from pytest_disagg import lmcache_wire as wire


class ProxyNotif(msgspec.Struct, tag=True):
    """LMCache 0.5.2's message (``PDMsgBase`` is a tagged msgspec struct)."""

    req_id: str


async def until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Sender:
    """A ZMQ PUSH socket where LMCache's prefill server would have one."""

    def __init__(self, port: int):
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    async def notify(self, req_id: str, copies: int = 1) -> None:
        for _ in range(copies):
            await self.sock.send(msgspec.msgpack.encode(ProxyNotif(req_id=req_id)))

    async def send_raw(self, payload: bytes) -> None:
        await self.sock.send(payload)

    def close(self) -> None:
        self.ctx.destroy(linger=0)


class LmcachePrefill(FakeVllm):
    """A prefill server whose LMCache notifies before it answers, after, or never.

    ``before``: the message is sent and matched by the proxy before the HTTP answer leaves;
    ``after``: sent once the proxy holds every answered prefill (its records say so).
    """

    def __init__(self, name: str = "P", *, when: tuple[str, ...] = ("before",), copies: int = 1, status: int = 200):
        super().__init__(name, status=status)
        self.when, self.copies = when, copies
        self.proxy: DisaggProxy | None = None
        self.sender: Sender | None = None
        self.tasks: list[asyncio.Task] = []

    async def complete(self, request: web.Request):
        body = await request.json()
        req_id = body["kv_transfer_params"]["disagg_spec"]["req_id"]
        when = self.when[len(self.bodies) % len(self.when)]
        if when == "before":
            target = self.proxy.handoff.pd.matched + 1
            await self.sender.notify(req_id, self.copies)
            await until(lambda: self.proxy.handoff.pd.matched >= target, "the proxy to match the message")
        answer = await super().complete(request)
        if when == "after":
            self.tasks.append(asyncio.create_task(self._notify_after_answer(req_id)))
        return answer

    async def _notify_after_answer(self, req_id: str) -> None:
        await until(lambda: all(r.prefill_ms is not None or r.status != "ok" for r in self.proxy.records),
                    "the proxy to get prefill's answers")
        await self.sender.notify(req_id, self.copies)


def pd_ports(ranks: int = 1) -> tuple[int, list[int], list[int]]:
    taken: set[int] = set()
    while len(taken) < 1 + 2 * ranks:
        taken.add(free_port())
    ports = sorted(taken)
    return ports[0], ports[1:1 + ranks], ports[1 + ranks:]


@contextlib.asynccontextmanager
async def deployment(prefill: LmcachePrefill, *, ranks: int = 1, timeout_s: float = 10.0):
    """Fake prefill and decode servers, the proxy in front (PULL socket bound), a fake sender."""
    decode = FakeVllm("D")
    servers = [TestServer(prefill.app()), TestServer(decode.app())]
    for s in servers:
        await s.start_server()
    pre_url, dec_url = (str(s.make_url("")).rstrip("/") for s in servers)
    notify, init, alloc = pd_ports(ranks)
    proxy = DisaggProxy("lmcache_pd", [pre_url], [dec_url], pd_notify_port=notify, pd_init_ports=init,
                        pd_alloc_ports=alloc, pd_timeout_s=timeout_s)
    client = TestClient(TestServer(proxy.app()))
    await client.start_server()
    sender = Sender(notify)
    prefill.proxy, prefill.sender = proxy, sender
    try:
        yield client, proxy, decode, sender
    finally:
        for task in prefill.tasks:
            task.cancel()
        await asyncio.gather(*prefill.tasks, return_exceptions=True)
        sender.close()
        await client.close()
        for s in servers:
            await s.close()


async def post(client: TestClient, rid: str, body: dict = BODY):
    resp = await client.post("/v1/completions", json=body, headers={"X-Request-Id": rid})
    return resp.status, resp.headers.get("X-Disagg-Stage"), await resp.text()


async def records_and_stats(client: TestClient) -> tuple[list[dict], dict]:
    records = await (await client.get("/disagg/records")).json()
    stats = await (await client.get("/disagg/stats")).json()
    return records, stats["lmcache_pd"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_prefill_carries_the_spec_and_decode_gets_the_original_request(when):
    prefill = LmcachePrefill(when=(when,))

    async def scenario():
        async with deployment(prefill) as (client, proxy, decode, _):
            answer = await post(client, "r0")
            records, stats = await records_and_stats(client)
            return answer, records, stats, proxy.handoff.pd, decode

    (status, _, text), records, stats, pd, decode = asyncio.run(scenario())
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    (pre,) = prefill.bodies
    spec = pre["kv_transfer_params"]["disagg_spec"]
    assert pre["kv_transfer_params"] == {"disagg_spec": wire.disagg_spec(
        spec["req_id"], wire.PdPorts(init=pd.init_ports[0], alloc=pd.alloc_ports[0], notify=pd.notify_port))}
    assert spec["receiver_host"] == "127.0.0.1" and spec["receiver_init_port"] == pd.init_ports
    assert pre["max_tokens"] == 1 and pre["stream"] is False
    (dec,) = decode.bodies
    assert dec == BODY and "kv_transfer_params" not in dec      # every output token computed by decode
    (rec,) = records
    assert rec["status"] == "ok" and rec["prefill_ms"] > 0 and rec["decode_ms"] > 0
    if when == "before":
        assert rec["handoff_ms"] == 0.0
    else:
        assert rec["handoff_ms"] > 0.0
    assert (stats["matched"], stats["unmatched"], stats["waiting"], stats["timeouts"]) == (1, 0, 0, 0)


def test_each_request_gets_its_own_id_and_waits_for_its_own_message():
    prefill = LmcachePrefill(when=("after", "before", "after"))

    async def scenario():
        async with deployment(prefill) as (client, _, decode, _):
            answers = await asyncio.gather(*(post(client, f"r{i}") for i in range(9)))
            return answers, *(await records_and_stats(client)), decode

    answers, records, stats, decode = asyncio.run(scenario())
    assert [a[0] for a in answers] == [200] * 9 and len(decode.bodies) == 9
    ids = {b["kv_transfer_params"]["disagg_spec"]["req_id"] for b in prefill.bodies}
    assert len(ids) == 9 and all(r["status"] == "ok" for r in records)
    assert (stats["matched"], stats["unmatched"], stats["waiting"]) == (9, 0, 0)


def test_no_message_is_504_at_handoff_and_a_late_one_is_counted():
    prefill = LmcachePrefill(when=("never",))

    async def scenario():
        async with deployment(prefill, timeout_s=0.3) as (client, proxy, decode, sender):
            answer = await post(client, "r0")
            await sender.notify(prefill.bodies[0]["kv_transfer_params"]["disagg_spec"]["req_id"])
            await until(lambda: proxy.handoff.pd.received == 1, "the late message")
            return answer, *(await records_and_stats(client)), decode

    (status, stage, text), records, stats, decode = asyncio.run(scenario())
    assert status == 504 and stage == "handoff" and "0 of 1 ranks" in text
    assert decode.bodies == []
    assert records[0]["stage_failed"] == "handoff" and records[0]["prefill_ms"] > 0
    assert (stats["timeouts"], stats["waiting"], stats["matched"], stats["unmatched"]) == (1, 0, 0, 1)


# The one-copy case sends its message before prefill's answer: sent after it, on a loaded box the
# copy could miss the 0.3 s wait too ("0 of 2 ranks", CI 2026-12-08), a race and not the rule tested.
@pytest.mark.parametrize("copies, when, status, timeout_s", [(2, "after", 200, 10.0), (1, "before", 504, 0.3)])
def test_one_message_per_decode_tp_rank(copies, when, status, timeout_s):
    prefill = LmcachePrefill(when=(when,), copies=copies)

    async def scenario():
        async with deployment(prefill, ranks=2, timeout_s=timeout_s) as (client, proxy, decode, _):
            answer = await post(client, "r0")
            return answer, proxy.handoff.pd, decode

    (got, stage, text), pd, decode = asyncio.run(scenario())
    assert got == status
    spec = prefill.bodies[0]["kv_transfer_params"]["disagg_spec"]
    assert spec["receiver_init_port"] == pd.init_ports and spec["receiver_alloc_port"] == pd.alloc_ports
    assert len(pd.init_ports) == 2
    if status == 504:
        assert stage == "handoff" and "1 of 2 ranks" in text and decode.bodies == []


def test_unmatched_and_malformed_messages_are_counted_not_kept():
    prefill = LmcachePrefill(when=("before",), copies=2)      # one copy more than ranks

    async def scenario():
        async with deployment(prefill) as (client, proxy, _, sender):
            await sender.notify("stranger")
            await sender.send_raw(b"\xc1 not msgpack")
            await sender.send_raw(msgspec.msgpack.encode({"type": "AllocRequest", "req_id": "x"}))
            answer = await post(client, "r0")
            await until(lambda: proxy.handoff.pd.received == 5, "every message")
            return answer, *(await records_and_stats(client)), proxy.handoff.pd

    (status, _, _), _, stats, pd = asyncio.run(scenario())
    assert status == 200
    assert (stats["received"], stats["matched"], stats["unmatched"], stats["malformed"]) == (5, 1, 2, 2)
    assert stats["recent_unmatched"][0] == "stranger" and stats["waiting"] == 0 and pd._waiters == {}


def test_failed_prefill_drops_its_waiter():
    prefill = LmcachePrefill(when=("never",), status=503)

    async def scenario():
        async with deployment(prefill) as (client, _, decode, _):
            return await post(client, "r0"), *(await records_and_stats(client)), decode

    (status, stage, _), records, stats, decode = asyncio.run(scenario())
    assert status == 503 and stage == "prefill" and decode.bodies == []
    assert stats["waiting"] == 0 and stats["timeouts"] == 0


@pytest.mark.parametrize("kwargs, words", [
    (dict(mode="lmcache_pd", decode=["d"]), "needs --pd-notify-port"),
    (dict(mode="lmcache_pd", decode=["d", "e"], pd_notify_port=1, pd_init_ports=[2], pd_alloc_ports=[3]),
     "exactly one --decode"),
    (dict(mode="lmcache_pd", decode=["d"], pd_notify_port=1, pd_init_ports=[2, 4], pd_alloc_ports=[3]),
     "per decode TP rank"),
    (dict(mode="lmcache_pd", decode=["d"], pd_notify_port=1, pd_init_ports=[2], pd_alloc_ports=[1]),
     "must all differ"),
    (dict(mode="kv_params", decode=["d"], pd_notify_port=1), "are for mode 'lmcache_pd'"),
])
def test_bad_construction(kwargs, words):
    mode, decode = kwargs.pop("mode"), kwargs.pop("decode")
    with pytest.raises(ValueError, match=words):
        DisaggProxy(mode, ["p"], decode, **kwargs)


def test_port_flags_are_repeatable_or_comma_lists():
    proxy, _ = build(["--mode", "lmcache_pd", "--port", "1", "--prefill", "p", "--decode", "d",
                      "--pd-notify-port", "9", "--pd-receiver-init-port", "10,11",
                      "--pd-receiver-alloc-port", "12", "--pd-receiver-alloc-port", "13"])
    assert (proxy.handoff.pd.notify_port, proxy.handoff.pd.init_ports, proxy.handoff.pd.alloc_ports, proxy.handoff.pd.ranks) == (9, [10, 11], [12, 13], 2)
    with pytest.raises(SystemExit):
        build(["--mode", "lmcache_pd", "--port", "1", "--prefill", "p", "--decode", "d"])


def _handle(role: str, port: int) -> ServerHandle:
    return ServerHandle(role=role, url=f"http://127.0.0.1:{port}", pid=0, device="cuda:0", gpu_indices=(0,),
                        log_path="", cmdline=())


def test_pool_gives_servers_and_proxy_the_same_ports(tmp_path):
    medium = MediumRegistry().get("lmcache-nixl")
    assert medium.ports == wire.PD_PORT_NAMES
    ports = deployment_ports(medium)
    assert set(ports) == {"prefill", "decode", *wire.PD_PORT_NAMES} and len(set(ports.values())) == len(ports)
    ctx = MediumContext(workdir=tmp_path, device="cuda", side_channel_port=ports["prefill"], peer_ports=ports)
    expected = wire.PdPorts.from_context(ctx)                       # what both servers' LMCache files say
    cmd = proxy_command(medium, DeploymentConfig(medium="lmcache-nixl", device="cuda"),
                        [_handle("prefill", 8100), _handle("decode", 8200)], 8000, ports)
    assert cmd[cmd.index("--mode") + 1] == "lmcache_pd"
    proxy, _ = build(cmd[cmd.index("--mode"):])
    assert proxy.handoff.pd.disagg_spec("x") == wire.disagg_spec("x", expected)
    assert proxy.handoff.pd.notify_port == expected.notify


def test_other_mediums_pass_no_pd_ports():
    medium = MediumRegistry().get("nixl-cpu")
    ports = deployment_ports(medium)
    assert medium.ports == () and set(ports) == {"prefill", "decode"}
    cmd = proxy_command(medium, DeploymentConfig(medium="nixl-cpu"), [_handle("prefill", 1), _handle("decode", 2)],
                        3, ports)
    assert not [a for a in cmd if a.startswith("--pd-")]
    proxy, _ = build(cmd[cmd.index("--mode"):])
    assert proxy.mode == "kv_params" and proxy.handoff.name == "kv_params" and not hasattr(proxy.handoff, "pd")
