"""The proxy's hand-offs, records and error paths, against fake vLLM servers (loopback only)."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pytest_disagg.deploy.proxy import DisaggProxy


class FakeVllm:
    """Enough of vLLM's completions API for the proxy: records bodies, can fail on demand."""

    def __init__(self, name: str, *, status: int = 200, break_stream: bool = False, hang: str | None = None):
        self.name, self.status, self.break_stream = name, status, break_stream
        self.hang = hang          # "answer": never answers; "stream": stalls after the first chunk
        self.bodies: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.complete)
        return app

    async def complete(self, request: web.Request):
        body = await request.json()
        self.bodies.append(body)
        if self.hang == "answer":
            await asyncio.sleep(3600)
        if self.status != 200:
            return web.json_response({"error": "boom"}, status=self.status)
        if not body.get("stream"):
            n = len(self.bodies)
            return web.json_response({
                "choices": [{"text": "x"}], "usage": {"completion_tokens": body["max_tokens"]},
                "kv_transfer_params": {"do_remote_prefill": True, "remote_block_ids": [[n]], "remote_engine_id": self.name},
            })
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(body["max_tokens"]):
            await resp.write(f"data: {json.dumps({'choices': [{'text': str(i)}]})}\n\n".encode())
            if self.break_stream and i == 1:
                request.transport.close()
                return resp
            if self.hang == "stream":
                await asyncio.sleep(3600)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


async def _run(proxy_factory, backends: dict[str, FakeVllm], requests: list[dict]):
    servers = {name: TestServer(b.app()) for name, b in backends.items()}
    for s in servers.values():
        await s.start_server()
    urls = {name: str(s.make_url("")).rstrip("/") for name, s in servers.items()}
    proxy = proxy_factory(urls)
    client = TestClient(TestServer(proxy.app()))
    await client.start_server()
    answers = []
    try:
        for i, body in enumerate(requests):
            resp = await client.post("/v1/completions", json=body, headers={"X-Request-Id": f"r{i}"})
            answers.append((resp.status, resp.headers.get("X-Disagg-Stage"), await resp.text()))
        records = await (await client.get("/disagg/records")).json()
    finally:
        await client.close()
        for s in servers.values():
            await s.close()
    return answers, records


BODY = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 4, "stream": True}


def test_kv_params_handoff_carries_prefill_answer():
    pre, dec = FakeVllm("P"), FakeVllm("D")
    answers, records = asyncio.run(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]]), {"p": pre, "d": dec}, [BODY]))
    status, _, text = answers[0]
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    assert pre.bodies[0]["max_tokens"] == 1 and pre.bodies[0]["stream"] is False
    assert pre.bodies[0]["kv_transfer_params"]["do_remote_decode"] is True
    assert dec.bodies[0]["kv_transfer_params"] == {"do_remote_prefill": True, "remote_block_ids": [[1]], "remote_engine_id": "P"}
    assert dec.bodies[0]["max_tokens"] == 4 and dec.bodies[0]["prompt"] == [1, 2, 3]
    (rec,) = records
    assert rec["request_id"] == "r0" and rec["status"] == "ok"
    assert rec["prefill_ms"] > 0 and rec["decode_ms"] > 0 and rec["handoff_ms"] >= 0


def test_storage_handoff_sends_same_prompt_twice():
    pre, dec = FakeVllm("P"), FakeVllm("D")
    asyncio.run(_run(lambda u: DisaggProxy("storage", [u["p"]], [u["d"]]), {"p": pre, "d": dec}, [BODY]))
    assert pre.bodies[0]["prompt"] == dec.bodies[0]["prompt"]
    assert "kv_transfer_params" not in pre.bodies[0] and "kv_transfer_params" not in dec.bodies[0]


def test_prefill_failure_names_the_stage():
    pre, dec = FakeVllm("P", status=503), FakeVllm("D")
    answers, records = asyncio.run(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]]), {"p": pre, "d": dec}, [BODY]))
    status, stage, text = answers[0]
    assert status == 503 and stage == "prefill" and "prefill server answered 503" in text
    assert records[0]["stage_failed"] == "prefill" and dec.bodies == []


def test_unreachable_decode_is_502_with_stage():
    pre = FakeVllm("P")
    answers, records = asyncio.run(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], ["http://127.0.0.1:9"]), {"p": pre}, [BODY]))
    status, stage, _ = answers[0]
    assert status == 502 and stage == "decode" and records[0]["stage_failed"] == "decode"


def test_decode_dying_mid_stream_is_recorded():
    pre, dec = FakeVllm("P"), FakeVllm("D", break_stream=True)
    answers, records = asyncio.run(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]]), {"p": pre, "d": dec}, [BODY]))
    assert "[DONE]" not in answers[0][2]
    assert records[0]["status"] == "error" and records[0]["stage_failed"] == "decode"


@pytest.mark.parametrize("who, hang, stage", [("p", "answer", "prefill"), ("d", "answer", "decode")])
def test_a_stuck_server_fails_its_stage_within_the_stage_timeout(who, hang, stage):
    """A peer gone silent (NIXL peer lost, a KV load that never ends): 504 naming the stage, no hang."""
    backends = {"p": FakeVllm("P"), "d": FakeVllm("D")}
    backends[who].hang = hang
    answers, records = asyncio.run(asyncio.wait_for(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]], stage_timeout_s=0.5), backends, [BODY]), 30))
    status, got_stage, text = answers[0]
    assert status == 504 and got_stage == stage, text
    assert f"{stage} server sent nothing for 0.5 s" in text
    assert records[0]["status"] == "error" and records[0]["stage_failed"] == stage


def test_a_decode_stream_that_stalls_is_cut_and_recorded():
    answers, records = asyncio.run(asyncio.wait_for(_run(
        lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]], stage_timeout_s=0.5),
        {"p": FakeVllm("P"), "d": FakeVllm("D", hang="stream")}, [BODY]), 30))
    assert "[DONE]" not in answers[0][2]
    assert records[0]["stage_failed"] == "decode" and "decode stream stalled" in records[0]["error"]


def test_fault_hands_decode_the_previous_requests_kv():
    pre, dec = FakeVllm("P"), FakeVllm("D")
    asyncio.run(_run(lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]], fault="swap-kv-params"),
                     {"p": pre, "d": dec}, [BODY, BODY, BODY]))
    got = [b["kv_transfer_params"]["remote_block_ids"] for b in dec.bodies]
    assert got == [[[1]], [[1]], [[2]]]


def test_colocated_mode_balances_by_in_flight():
    a, b = FakeVllm("A"), FakeVllm("B")
    asyncio.run(_run(lambda u: DisaggProxy("none", [], [u["a"], u["b"]]), {"a": a, "b": b}, [BODY] * 4))
    assert len(a.bodies) + len(b.bodies) == 4 and a.bodies  # sequential: ties go to the first


def test_bad_body_is_400():
    pre, dec = FakeVllm("P"), FakeVllm("D")
    answers, _ = asyncio.run(_run(lambda u: DisaggProxy("kv_params", [u["p"]], [u["d"]]),
                                  {"p": pre, "d": dec}, [[1, 2]]))  # a JSON list, not an object
    assert answers[0][0] == 400 and "not a JSON object" in answers[0][2]


@pytest.mark.parametrize("args, words", [
    (("teleport", ["u"], ["u"]), "unknown mode"),
    (("kv_params", [], ["u"]), "needs --prefill and --decode"),
    (("none", [], []), "at least one --backend"),
])
def test_bad_construction(args, words):
    with pytest.raises(ValueError, match=words):
        DisaggProxy(*args)


class _FakeClock:
    """Time that moves only when the pacer sleeps: the pacing's arithmetic without a wall clock."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds


async def _chunks(*parts: bytes, error: Exception | None = None):
    for p in parts:
        yield p
    if error is not None:
        raise error


def _paced(parts, delay_s, clock, error=None) -> list[bytes]:
    from pytest_disagg.deploy.proxy import paced_events

    async def collect():
        return [e async for e in paced_events(_chunks(*parts, error=error), delay_s, clock=clock, sleep=clock.sleep)]
    return asyncio.run(collect())


def test_token_pacing_lengthens_each_gap_between_events_by_the_delay():
    clock = _FakeClock()
    # three events arriving together, the second split across chunks; the first leaves at once
    events = _paced([b"data: 0\n\ndata: ", b"1\n\ndata: 2\n\n", b"data: [DONE]\n\n"], 0.004, clock)
    assert events == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]
    assert clock.sleeps == [0.004, 0.004, 0.004]          # event k leaves k * 4 ms after arrival


def test_token_pacing_passes_an_upstream_error_on():
    with pytest.raises(ConnectionResetError):
        _paced([b"data: 0\n\n"], 0.001, _FakeClock(), error=ConnectionResetError("gone"))


def test_token_delay_flag_reaches_the_proxy_and_is_checked():
    from pytest_disagg.deploy.proxy import build

    proxy, _ = build(["--mode", "none", "--backend", "http://127.0.0.1:1", "--port", "1",
                      "--extra-token-delay-ms", "0.5"])
    assert proxy.token_delay_s == 0.0005
    with pytest.raises(ValueError, match="extra-token-delay-ms must be >= 0"):
        DisaggProxy("none", [], ["http://127.0.0.1:1"], extra_token_delay_ms=-1)
