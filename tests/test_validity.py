"""Validity rules: synthetic runs with bursts, client lag and saturation get their named reason;
a normal run is valid. Plus the fake server end to end: a stream with no inter-token gap is bursty."""
from __future__ import annotations

import numpy as np
import pytest

from pytest_disagg import validity
from pytest_disagg.load import RunResult, WorkloadSpec, arrivals, fixed
from pytest_disagg.load.client import RequestRecord

MS = 1_000_000


def make_run(n=40, *, rate=10.0, ttft_ms=20.0, itl_ms=5.0, tokens=8, lag_ms=0.0, ttft_growth_ms=0.0,
             service_gap_ms=None, loop_lag=(), arrival=None, seed=0):
    """Requests scheduled every 1/rate s; each starts ``lag_ms`` late, its first token after
    ``ttft_ms`` (+ ``ttft_growth_ms`` per request: a growing queue), then one token per ``itl_ms``.
    ``service_gap_ms`` spaces the completions (a deployment that serves one request per gap)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        sched = int(i / rate * 1e9)
        send = sched + int(lag_ms * MS)
        first = send + int((ttft_ms + ttft_growth_ms * i) * MS)
        chunks = [first + int(k * itl_ms * MS) for k in range(tokens)]
        if service_gap_ms is not None:
            end = int((i + 1) * service_gap_ms * MS)
            first = min(first, end)
            chunks = [max(c, end - int((tokens - 1 - k) * itl_ms * MS)) for k, c in enumerate(chunks)]
        chunks = [c + int(rng.integers(0, 1000)) for c in chunks]
        chunks.sort()
        rec = RequestRecord(request_id=f"r{i}", prompt_tokens=16, expected_output_tokens=tokens, scheduled_ns=sched,
                            send_ns=send, end_ns=chunks[-1], chunk_ns=chunks, output_tokens=tokens, status="ok")
        records.append(rec)
    spec = WorkloadSpec(arrival=arrival or arrivals.poisson(rate), num_requests=n, prompt=fixed(16), output=fixed(tokens))
    wall = (max(r.end_ns for r in records) - 0) / 1e9
    return RunResult(workload=spec, records=records, t0_ns=0, wall_s=wall, loop_lag_ms=list(loop_lag))


def test_a_normal_run_is_valid():
    a = validity.assess(make_run(loop_lag=[0.1] * 200))
    assert a.valid and a.reasons == () and a.details == ()
    assert a.figures["zero_gap_fraction"] == 0.0 and a.figures["achieved_ratio"] == pytest.approx(1.0, rel=0.1)
    assert a.to_json()["valid"] is True and a.to_json()["invalid_reasons"] == []


def test_tokens_in_one_burst_are_token_bursts():
    a = validity.assess(make_run(itl_ms=0.0))
    assert not a.valid and a.reasons == ("token-bursts",)
    assert "inter-token gaps" in a.details[0] and a.figures["one_burst_fraction"] == 1.0


def test_late_sends_are_client_lag_but_small_lag_against_a_long_ttft_is_not():
    a = validity.assess(make_run(lag_ms=60.0))
    assert a.reasons == ("client-lag",) and "send lateness" in a.details[0]
    assert validity.assess(make_run(lag_ms=60.0, ttft_ms=2000.0)).valid     # 60 ms < 10 % of 2 s


def test_a_late_event_loop_is_client_lag():
    a = validity.assess(make_run(loop_lag=[1.0] * 90 + [80.0] * 10 + [90.0] * 5))
    assert a.reasons == ("client-lag",) and "event-loop lag" in a.details[0]


def test_a_growing_queue_is_saturated():
    a = validity.assess(make_run(ttft_growth_ms=20.0))
    assert a.reasons == ("saturated",) and "queue growing" in " ".join(a.details)


def test_completions_far_below_the_offered_rate_are_saturated():
    # offered 10 req/s, served one every 250 ms (4 req/s), latency flat (a closed queue of fixed depth)
    a = validity.assess(make_run(rate=10.0, service_gap_ms=250.0, ttft_ms=5.0))
    assert "saturated" in a.reasons and a.figures["achieved_ratio"] < validity.SATURATED_RATIO


def test_closed_loop_and_all_at_once_have_no_offered_rate_to_miss():
    assert validity.offered_rate(WorkloadSpec(arrival=arrivals.concurrency(4), num_requests=4, prompt=fixed(8), output=fixed(4))) is None
    assert validity.offered_rate(WorkloadSpec(arrival=arrivals.all_at_once(), num_requests=4, prompt=fixed(8), output=fixed(4))) is None
    run = make_run(ttft_growth_ms=20.0, arrival=arrivals.concurrency(8))
    assert "saturated" not in validity.assess(run).reasons


def test_several_reasons_are_all_named():
    a = validity.assess(make_run(itl_ms=0.0, lag_ms=80.0, ttft_growth_ms=30.0))
    assert a.reasons == ("token-bursts", "client-lag", "saturated") and len(a.details) >= 3


def test_too_few_requests_abstain():
    assert validity.assess(make_run(n=4, itl_ms=0.0, lag_ms=100.0)).valid


def test_fake_server_stream_without_gaps_is_bursty_and_with_gaps_is_valid():
    from tests.test_load_client import run_against
    from pytest_disagg.testing.fakeserver import FakeServerConfig

    spec = WorkloadSpec(arrival=arrivals.poisson(50.0), num_requests=20, prompt=fixed(8), output=fixed(6), seed=3)
    bursty = run_against(FakeServerConfig(ttft_s=0.005, itl_s=0.0), spec)
    assert "token-bursts" in validity.assess(bursty).reasons
    steady = run_against(FakeServerConfig(ttft_s=0.005, itl_s=0.004), spec)
    assert "token-bursts" not in validity.assess(steady).reasons
    assert steady.loop_lag_ms and steady.client_figures()["loop_lag_samples"] == len(steady.loop_lag_ms)


def test_a_host_stall_that_drains_is_not_a_growing_queue():
    # colocated at 5.7, 11 and 18 req/s in docs/example-report: ~20 ms TTFT, then a cluster of requests
    # held 150-800 ms by the host (vLLM's queue time ~1 ms) landing in the last quarter
    quiet = [18.0 + (i % 5) for i in range(40)]
    drained = quiet[:25] + [264, 265, 474, 474, 475, 484, 393, 427, 302, 199, 83] + [15, 16, 18, 16]
    late = quiet[:31] + [583, 584, 587, 587, 729, 814, 736, 736, 682]
    for ttft in (drained, late):
        grew, figures = validity.queue_growth(ttft)
        assert not grew and figures["ttft_last_quarter_ms"] > validity.QUEUE_GROWTH * figures["ttft_first_quarter_ms"]


def test_a_queue_that_stays_built_is_growing():
    grew, figures = validity.queue_growth([20.0 + 30.0 * i for i in range(40)])
    assert grew and figures["ttft_last_eighth_ms"] > figures["ttft_third_quarter_ms"]
    # disk at 25 req/s in docs/example-report: a step up that never drains (also 53 % completions)
    step = [71, 103, 237, 234, 212, 212, 205, 87, 212, 186, 270, 262, 264] + [1600.0] * 27
    assert validity.queue_growth(step)[0]
