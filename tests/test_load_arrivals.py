"""Arrival processes: seeded, deterministic, and with the statistics they claim (wide bounds)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_disagg.load import arrivals
from pytest_disagg.load.arrivals import Arrival, ArrivalError


def gaps(arrival: Arrival, n: int = 20000, seed: int = 1) -> np.ndarray:
    return np.diff(arrivals.offsets(arrival, n, np.random.default_rng(seed)))


def test_poisson_has_mean_one_over_rate_and_cv_one():
    g = gaps(arrivals.poisson(50.0))
    assert g.mean() == pytest.approx(1 / 50.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.08)


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_keeps_the_rate_and_has_the_cv_asked_for(cv):
    g = gaps(arrivals.gamma(20.0, cv), n=60000)
    assert g.mean() == pytest.approx(1 / 20.0, rel=0.08)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.15)


def test_constant_and_all_at_once():
    off = arrivals.offsets(arrivals.constant(4.0), 5, np.random.default_rng(0))
    assert off.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert arrivals.offsets(arrivals.poisson(math.inf), 7, np.random.default_rng(0)).tolist() == [0.0] * 7
    assert arrivals.offsets(arrivals.all_at_once(), 3, np.random.default_rng(0)).tolist() == [0.0] * 3


def test_same_seed_same_schedule_other_seed_other_schedule():
    a = arrivals.offsets(arrivals.poisson(10.0), 100, np.random.default_rng(5))
    assert np.array_equal(a, arrivals.offsets(arrivals.poisson(10.0), 100, np.random.default_rng(5)))
    assert not np.array_equal(a, arrivals.offsets(arrivals.poisson(10.0), 100, np.random.default_rng(6)))


def test_closed_loop_has_no_schedule_but_ramped_starts():
    arrival = arrivals.concurrency(4, ramp_s=2.0)
    assert arrivals.offsets(arrival, 10, np.random.default_rng(0)) is None
    assert arrivals.ramp_offsets(arrival).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert arrivals.ramp_offsets(arrivals.concurrency(3)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("make, message", [
    (lambda: Arrival("poisson"), "rate > 0"),
    (lambda: Arrival("poisson", rate=-1.0), "rate > 0"),
    (lambda: Arrival("gamma", rate=1.0), "cv"),
    (lambda: Arrival("poisson", rate=1.0, cv=2.0), "only gamma"),
    (lambda: Arrival("concurrency", concurrency=0), "concurrency >= 1"),
    (lambda: Arrival("concurrency", rate=1.0, concurrency=2), "take no rate"),
    (lambda: Arrival("trace"), "trace="),
    (lambda: Arrival("uniform", rate=1.0), "kind must be one of"),
])
def test_bad_arrivals_are_rejected(make, message):
    with pytest.raises(ArrivalError, match=message):
        make()


def test_json_round_trip_including_inf():
    for a in (arrivals.poisson(math.inf), arrivals.gamma(3.0, 2.0), arrivals.concurrency(8, 1.5),
              arrivals.trace("x.jsonl", 2.0)):
        data = json.loads(json.dumps(a.to_json(), allow_nan=False))
        assert Arrival.from_json(data) == a


def write(tmp_path, lines: list[str]) -> str:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_trace_replay_keeps_relative_times_and_scales(tmp_path):
    path = write(tmp_path, ['{"arrival_s": 2.0, "prompt_tokens": 5, "output_tokens": 2}',
                            '', '{"arrival_s": 2.5, "prompt_tokens": 6, "output_tokens": 3, "prefix_group": 1}'])
    assert arrivals.offsets(arrivals.trace(path), 2, None).tolist() == [0.0, 0.5]
    assert arrivals.offsets(arrivals.trace(path, scale=0.5), 2, None).tolist() == [0.0, 1.0]
    with pytest.raises(ArrivalError, match="has 2 requests, 3 asked for"):
        arrivals.offsets(arrivals.trace(path), 3, None)


@pytest.mark.parametrize("line, message", [
    ('{"arrival_s": 1, "prompt_tokens": 5}', "missing field"),
    ('{"arrival_s": -1, "prompt_tokens": 5, "output_tokens": 1}', "arrival_s must be"),
    ('{"arrival_s": 1, "prompt_tokens": 0, "output_tokens": 1}', "prompt_tokens must be"),
    ('{"arrival_s": 1, "prompt_tokens": 2, "output_tokens": 1, "prefix_group": "a"}', "prefix_group"),
    ('[1, 2]', "expected an object"),
    ('{"arrival_s": ', "not JSON"),
])
def test_bad_trace_rows_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, ['{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 2}', line])
    with pytest.raises(ArrivalError, match=f"trace.jsonl:2: .*{message}"):
        arrivals.read_trace(path)


def test_trace_going_back_in_time_and_missing_trace(tmp_path):
    path = write(tmp_path, ['{"arrival_s": 3, "prompt_tokens": 5, "output_tokens": 2}',
                            '{"arrival_s": 1, "prompt_tokens": 5, "output_tokens": 2}'])
    with pytest.raises(ArrivalError, match="goes back in time"):
        arrivals.read_trace(path)
    with pytest.raises(ArrivalError, match="not found"):
        arrivals.read_trace("no-such-trace.jsonl")
