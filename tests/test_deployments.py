"""Real vLLM deployments, one per medium × prefix caching: they come up, answer, and move KV."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from pytest_disagg.testing.procs import is_loopback, listening


def _post(url: str, body: dict, headers: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_servers_are_real_vllm_processes(disagg_deployment):
    d = disagg_deployment
    roles = sorted(s.role for s in d.servers)
    expected = sorted(d.medium.roles())
    assert roles == expected
    for server in d.servers:
        os.kill(server.pid, 0)  # alive
        assert "vllm.entrypoints.openai.api_server" in " ".join(server.cmdline)
        load_format = server.cmdline[server.cmdline.index("--load-format") + 1]
        assert load_format == {"dummy": "dummy", "checkpoint": "auto"}[d.config.weights], server.cmdline
        text = server.scrape_metrics()
        assert "vllm:" in text, f"{server.role} /metrics does not look like vLLM's"
        assert os.path.getsize(server.log_path) > 0
    assert _get(d.url + "/health")["status"] == "ok"
    bound = listening([s.pid for s in d.servers], tree=True)     # API server, EngineCore, workers (NIXL's UCX)
    assert bound, "no listening socket found: the loopback guard would prove nothing"
    assert all(is_loopback(ip) for _, _, ip, _ in bound), bound


def test_completion_through_proxy_has_exact_length(disagg_deployment):
    d = disagg_deployment
    prompt = list(range(10, 10 + 57))
    answer = _post(d.url + "/v1/completions", {
        "model": d.model_name, "prompt": prompt, "max_tokens": 7, "temperature": 0, "ignore_eos": True,
    }, headers={"X-Request-Id": "exact-length"})
    assert answer["usage"]["prompt_tokens"] == len(prompt)
    assert answer["usage"]["completion_tokens"] == 7
    records = [r for r in _get(d.url + "/disagg/records") if r["request_id"] == "exact-length"]
    assert len(records) == 1 and records[0]["status"] == "ok", records
    rec = records[0]
    assert rec["decode_ms"] > 0 and rec["total_ms"] >= rec["decode_ms"]
    if d.medium.disaggregated:
        assert rec["prefill_ms"] > 0 and rec["handoff_ms"] is not None
    else:
        assert rec["prefill_ms"] is None


def test_chat_completion_streams_through_proxy(disagg_deployment):
    d = disagg_deployment
    body = json.dumps({
        "model": d.model_name, "messages": [{"role": "user", "content": "sivada nuse ka"}],
        "max_tokens": 5, "temperature": 0, "ignore_eos": True, "stream": True,
    }).encode()
    req = urllib.request.Request(d.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        lines = [ln for ln in resp.read().decode().splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert len(lines) >= 3


def test_kv_moved_between_prefill_and_decode(disagg_deployment):
    d = disagg_deployment
    if not d.medium.disaggregated:
        pytest.skip("colocated: nothing is transferred")
    check = d.selfcheck
    print(f"self-check of {d.key}: {json.dumps(check)}")
    assert check is not None and check["passed"], check
    if "store_barrier" in check:   # decode waited for asynchronous stores; none ran out of time
        assert check["store_barrier"]["timeout"] == 0 and check["store_barrier"]["complete"] > 0, check
    if check["evidence"] == "nixl_bytes":
        assert check["measured_kv_bytes_per_token"] == d.kv_bytes_per_token
    else:
        assert check["external_hit_tokens"] >= check["full_block_tokens"] > 0
    assert check["decode_local_compute_tokens"] <= check["allowed_local_compute_tokens"]


def test_a_deployment_no_test_uses_waits_stopped_until_one_gets_it(disagg_pool):
    """On real servers: while a test that asks for no deployment runs, the deployments earlier
    tests used wait stopped (an idle nixl-cpu pair polls both cores of a CI box); ``get``
    continues one, and it answers. Runs after this module's tests, so one is alive."""
    import psutil

    if not disagg_pool.pause_idle or disagg_pool.launcher.name != "local":
        pytest.skip("this session's pool leaves unused deployments running")
    # Only deployments whose servers all still exist (a fault test may have killed one's server).
    live = [d for d in disagg_pool.live() if d.config.device == "cpu" and d.servers
            and all(psutil.pid_exists(s.pid) for s in d.servers) and disagg_pool.check(d.config) is None]
    if not live:
        pytest.skip("no deployment is alive at this point of the session")
    d = live[-1]
    assert {psutil.Process(s.pid).status() for s in d.servers} == {psutil.STATUS_STOPPED}
    again = disagg_pool.get(d.config)
    assert {psutil.Process(s.pid).status() for s in again.servers} <= {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}
    assert _get(again.url + "/health")["status"] == "ok"
