"""The streaming client and the runner against the fake OpenAI server (loopback, bounded): answers,
every failure kind recorded with its stage, scrapes, proxy records, warm-ups, wall-time bounds."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_disagg.load import arrivals
from pytest_disagg.load.client import ClientOptions, StreamClient
from pytest_disagg.testing.fakeserver import FakeServerConfig, serve
from pytest_disagg.load.runner import TargetError, arun_workload, check_target, progress_wanted
from pytest_disagg.load.workload import SLO, PrefixSharing, RequestSpec, WorkloadSpec, fixed

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    role: str
    url: str

    def metrics_url(self) -> str:
        return self.url + "/metrics"


@dataclass
class Target:
    url: str
    model_name: str
    servers: tuple


def request(n_out=5, rid="r0") -> RequestSpec:
    return RequestSpec(rid, tuple(range(10, 26)), n_out)


async def send_one(url, req, *, fault=None, timeout=10.0, endpoint="completions", token_ids=False):
    headers = (("X-Fake-Fault", fault),) if fault else ()
    client = StreamClient(url, "fake-model", ClientOptions(endpoint=endpoint, request_timeout_s=timeout,
                                                           extra_headers=headers, return_token_ids=token_ids))
    try:
        return await asyncio.wait_for(client.send(req, "rid-" + req.request_id), 30)
    finally:
        client.close()


def with_server(config: FakeServerConfig, body):
    async def main():
        runner, url = await serve(config)
        try:
            return await body(url)
        finally:
            await runner.cleanup()
    return asyncio.run(main())


@pytest.mark.parametrize("endpoint, token_ids", [("completions", False), ("completions", True), ("chat", False)])
def test_a_streamed_answer_gives_exact_tokens_and_times(endpoint, token_ids):
    rec = with_server(FakeServerConfig(ttft_s=0.02, itl_s=0.005),
                      lambda url: send_one(url, request(6), endpoint=endpoint, token_ids=token_ids))
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 6 and len(rec.chunk_ns) == 6 and rec.http_status == 200
    assert rec.chunk_tokens == ([1] * 6 if token_ids else None)
    assert rec.ttft_ms >= 20 and len(rec.itl_ms) == 5 and all(g >= 0 for g in rec.itl_ms)
    assert rec.e2el_ms >= rec.ttft_ms and rec.end_ns >= rec.chunk_ns[-1]


@pytest.mark.parametrize("fault, stage, message", [
    ("http500", "http", "HTTP 500: .*injected failure"),
    ("malformed:2", "parse", "not valid JSON"),
    ("drop:2", "stream", "after 2 token chunks"),
    ("error_event:1", "server", "injected engine failure"),
    ("short:3", "response", "got 3 output tokens, asked for exactly 6"),
])
def test_failures_are_recorded_with_stage_and_reason(fault, stage, message):
    rec = with_server(FakeServerConfig(itl_s=0.001), lambda url: send_one(url, request(6), fault=fault))
    assert rec.status == "failed" and rec.stage == stage, (rec.stage, rec.error)
    assert re.search(message, rec.error), rec.error


def test_a_stalled_stream_times_out():
    rec = with_server(FakeServerConfig(itl_s=0.001), lambda url: send_one(url, request(6), fault="stall:2", timeout=0.5))
    assert rec.status == "failed" and rec.stage == "timeout"
    assert "waiting for token 3" in rec.error and len(rec.chunk_ns) == 2


def test_nobody_listening_is_a_connect_failure():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # bound, not listening: connection refused
        rec = asyncio.run(send_one(f"http://127.0.0.1:{port}", request()))
    assert rec.status == "failed" and rec.stage == "connect" and "ConnectionRefused" in rec.error


def test_a_server_process_dying_mid_stream_fails_only_the_streams_it_had():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_disagg.testing.fakeserver", "--itl-ms", "20"],
                            stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        url = re.search(r"listening on (\S+)", proc.stdout.readline()).group(1)

        async def both():
            return await asyncio.gather(send_one(url, request(10, "a")), send_one(url, request(10, "b"), fault="exit:3"))
        a, b = asyncio.run(both())
        assert proc.wait(10) == 3
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for rec in (a, b):
        assert rec.status == "failed" and rec.stage == "stream", rec.error
        assert "token chunks" in rec.error


def test_https_and_bad_endpoints_are_refused_up_front():
    with pytest.raises(ValueError, match="plain http://"):
        StreamClient("https://example.invalid", "m")
    with pytest.raises(ValueError, match="endpoint"):
        StreamClient("http://127.0.0.1:1", "m", ClientOptions(endpoint="embeddings"))


def test_request_body_is_token_ids_with_exact_length_and_usage():
    client = StreamClient("http://127.0.0.1:9/prefix", "m")
    body = json.loads(client.body(request(7)))
    assert body["prompt"] == list(range(10, 26)) and body["max_tokens"] == 7 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    raw = client.raw_request("id-1", b"{}")
    assert raw.startswith(b"POST /prefix/v1/completions HTTP/1.1\r\n") and b"X-Request-Id: id-1\r\n" in raw


# --- the runner ------------------------------------------------------------------------------

def run_against(config: FakeServerConfig, spec: WorkloadSpec, **kw):
    async def body(url):
        return await arun_workload(Target(url, "fake-model", (Server("decode", url),)), spec, vocab_size=1000,
                                   progress=False, **kw)
    return with_server(config, body)


def test_run_scrapes_joins_records_and_leaves_warmups_out():
    spec = WorkloadSpec(arrival=arrivals.poisson(400.0), num_requests=40, prompt=fixed(16), output=fixed(4),
                        warmup=3, prefix=PrefixSharing(0.5, 2, 8), slo=SLO(ttft_ms=10_000))
    run = run_against(FakeServerConfig(ttft_s=0.005, itl_s=0.001, records=True), spec)
    assert run.n_ok == 40 and run.n_failed == 0 and run.truncated is None
    assert len(run.records) == 43 and sum(r.warmup for r in run.records) == 3
    assert len(run.samples()["ttft_ms"]) == 40 and len(run.samples()["itl_ms"]) == 40 * 3
    assert run.proxy_records and run.samples()["prefill_ms"] == [2.5] * 40
    delta = next(iter(run.server_metrics_delta.values()))
    assert delta["totals"]["fake:requests_total"] == 40          # the warm-ups came before the first scrape
    assert delta["totals"]["fake:generation_tokens_total"] == 160
    assert run.scalars()["goodput_fraction"] == 1.0
    data = json.loads(json.dumps(run.to_json()))
    assert data["workload_hash"] == spec.spec_hash() and len(data["records"]) == 43


def test_closed_loop_runs_every_request_and_failures_are_counted():
    spec = WorkloadSpec(arrival=arrivals.concurrency(4, ramp_s=0.01), num_requests=30, prompt=fixed(8),
                        output=fixed(3))
    run = run_against(FakeServerConfig(itl_s=0.001, fault="http500", fault_every=10), spec)
    assert run.n_ok == 27 and run.n_failed == 3 and run.failure_counts() == {"http": 3}
    assert not run.proxy_records          # no /disagg/records here: nothing joined, no error
    with pytest.raises(AssertionError, match="3 of 30 requests failed"):
        run.check_failures()


def test_wall_time_bound_cancels_what_is_in_flight():
    spec = WorkloadSpec(arrival=arrivals.constant(5.0), num_requests=20, prompt=fixed(8), output=fixed(50),
                        max_wall_s=0.5)
    run = run_against(FakeServerConfig(itl_s=0.05), spec)
    assert run.truncated and "max_wall_s" in run.truncated
    assert run.n_ok == 0 and run.n_failed == 0 and run.n_unfinished == 20
    assert {r.status for r in run.measured} == {"cancelled", "not_sent"}
    assert "no request completed (max_wall_s" in run.failure_message()


def test_trace_replay_against_the_fake_server():
    rows = arrivals.read_trace("chat_small.jsonl")[:12]
    spec = WorkloadSpec(arrival=arrivals.trace("chat_small.jsonl", scale=20.0), num_requests=12,
                        prefix=PrefixSharing(length=32))
    run = run_against(FakeServerConfig(), spec)
    assert run.n_ok == 12
    assert sorted(r.output_tokens for r in run.measured) == sorted(r.output_tokens for r in rows)


def test_targets_without_what_the_runner_needs_are_rejected():
    with pytest.raises(TargetError, match="missing"):
        check_target(object())
    with pytest.raises(TargetError, match="metrics_url"):
        check_target(Target("http://x", "m", (object(),)))


def test_progress_follows_the_installed_reporter(monkeypatch):
    from pytest_disagg import progress

    assert progress_wanted(True) and not progress_wanted(False)
    monkeypatch.setattr(progress, "_current", progress.Progress(None))      # -q: nothing to write to
    assert not progress_wanted(None)
    monkeypatch.setattr(progress, "_current", progress.Progress(lambda t: None))
    assert progress_wanted(None)
