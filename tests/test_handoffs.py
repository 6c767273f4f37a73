"""The hand-off registry: the four built-ins, clear errors for unknown names, and a hand-off added
in one place (the registry) that the proxy then runs, against fake servers on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pytest_disagg import handoffs
from pytest_disagg.handoffs.base import Handoff, ms
from pytest_disagg.deploy.pool import DeploymentConfig, proxy_command
from pytest_disagg.deploy.proxy import DisaggProxy, build
from pytest_disagg.mediums import Medium, MediumRegistry
from pytest_disagg.testing.fakeserver import FakeOpenAIServer, FakeServerConfig


def test_the_registry_lists_the_four_builtin_handoffs():
    assert list(handoffs.HANDOFFS) == ["none", "kv_params", "storage", "lmcache_pd"]
    assert [handoffs.get(n).disaggregated for n in handoffs.HANDOFFS] == [False, True, True, True]
    assert all(h.name == key for key, h in handoffs.HANDOFFS.items())


def test_every_builtin_medium_names_a_registered_handoff():
    assert {m.handoff for m in MediumRegistry()} == set(handoffs.HANDOFFS)


def test_an_unknown_handoff_name_is_a_clear_error():
    with pytest.raises(handoffs.UnknownHandoffError, match="unknown hand-off 'pigeon'; known: none, kv_params, "
                                                           "storage, lmcache_pd"):
        handoffs.get("pigeon")
    with pytest.raises(ValueError, match="medium 'mine': unknown hand-off 'pigeon'; known: none, kv_params"):
        MediumRegistry().register(Medium(name="mine", summary="x", handoff="pigeon"))
    with pytest.raises(ValueError, match="unknown mode 'pigeon'; known: none, kv_params"):
        DisaggProxy("pigeon", ["p"], ["d"])


def test_an_option_of_another_handoff_names_its_owner():
    with pytest.raises(ValueError, match="--store-barrier is for mode 'storage', not 'kv_params'"):
        handoffs.create("kv_params", ["p"], ["d"], {"store_barrier": object()})
    with pytest.raises(TypeError, match="no hand-off takes the option 'teleport'"):
        handoffs.create("kv_params", ["p"], ["d"], {"teleport": 1})
    # An option with a default (a timeout) given to another hand-off is left alone.
    assert handoffs.create("storage", ["p"], ["d"], {"pd_timeout_s": 30.0}).barrier is None


class Relay(Handoff):
    """A newcomer's hand-off: prefill one token, then ask decode for twice the tokens asked."""

    name = "relay"
    stats_keys = ("relay",)

    def __init__(self, prefill, decode):
        super().__init__(prefill, decode)
        self.handed = 0

    def stats(self) -> dict:
        return {"relay": self.handed}

    async def transition(self, proxy, path, body, record, t_start):
        await proxy.post_json(proxy.pick(proxy.prefill), path, {**body, "max_tokens": 1, "stream": False}, "prefill")
        t_prefilled = time.perf_counter_ns()
        record.prefill_ms = ms(t_start, t_prefilled)
        self.handed += 1
        record.handoff_ms = ms(t_prefilled, time.perf_counter_ns())
        return {**body, "max_tokens": 2 * body["max_tokens"]}


@pytest.fixture
def relay(monkeypatch):
    monkeypatch.setitem(handoffs.HANDOFFS, "relay", Relay)


def test_a_handoff_added_to_the_registry_is_what_the_proxy_runs(relay):
    prefill, decode = FakeOpenAIServer(FakeServerConfig(precise=False)), FakeOpenAIServer(FakeServerConfig(precise=False))

    async def scenario():
        async with TestServer(prefill.app(), host="127.0.0.1") as p, TestServer(decode.app(), host="127.0.0.1") as d:
            base = lambda s: f"http://127.0.0.1:{s.port}"     # noqa: E731
            proxy, _ = build(["--mode", "relay", "--port", "1", "--prefill", base(p), "--decode", base(d)])
            async with TestClient(TestServer(proxy.app(), host="127.0.0.1")) as client:
                resp = await client.post("/v1/completions", json={"model": "m", "prompt": "a b c", "max_tokens": 3,
                                                                  "stream": True})
                text = await resp.text()
                records = await (await client.get("/disagg/records")).json()
                stats = await (await client.get("/disagg/stats")).json()
                return resp.status, text, records, stats

    status, text, records, stats = asyncio.run(scenario())
    assert status == 200 and text.count('"text"') == 6, text      # decode was asked for 2 x 3 tokens
    assert prefill._count == 1 and decode._count == 1
    (record,) = records
    assert record["mode"] == "relay" and record["status"] == "ok" and record["handoff_ms"] is not None
    assert stats["relay"] == 1 and stats["lmcache_pd"] is None and stats["store_barrier"] is None


def test_a_medium_may_name_a_handoff_once_it_is_registered(relay, tmp_path):
    registry = MediumRegistry()
    registry.register(Medium(name="pigeon", summary="carrier", handoff="relay"))
    medium = registry.get("pigeon")
    assert medium.disaggregated and medium.roles() == ("prefill", "decode")
    cmd = proxy_command(medium, DeploymentConfig(medium="pigeon"), [], 8000, {})
    assert cmd[cmd.index("--mode") + 1] == "relay"


def test_the_store_barrier_group_is_owned_by_the_storage_handoff():
    _, args = build(["--mode", "storage", "--port", "1", "--prefill", "p", "--decode", "d"])
    assert args.store_chunk_tokens == 256 and args.pd_notify_port is None
    with pytest.raises(SystemExit):
        build(["--mode", "storage", "--port", "1", "--prefill", "p", "--decode", "d", "--pd-notify-port", "5"])

