"""The workload strategies: every draw is a valid, bounded workload; shrinking reaches minimal
workloads part by part; ``fixed_workload`` is the same everywhere; the profiles are what the
docs say."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from pytest_disagg import strategies as S
from pytest_disagg.load import WorkloadSpec, build_requests, concurrency, poisson
from pytest_disagg.load.arrivals import offsets

VOCAB = 2048
PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

bounds_st = st.fixed_dictionaries({
    "max_model_len": st.integers(2, 512),
    "budget_tokens": st.integers(64, 4096),
}, optional={
    "max_requests": st.integers(1, 10),
    "max_output_tokens": st.integers(1, 32),
    "prefix": st.sampled_from([None, True, False]),
    "min_prefix_tokens": st.integers(1, 40),
    "length_kinds": st.sampled_from([("fixed",), ("uniform",), ("lognormal",), S.LENGTH_KINDS]),
})


def _usable(b: dict) -> bool:
    try:
        S.workloads(**b)
    except InvalidArgument:
        return False
    return True


@PURE
@given(st.data())
def test_every_drawn_workload_is_valid_and_within_its_bounds(data):
    b = data.draw(bounds_st.filter(_usable), label="bounds")
    spec = data.draw(S.workloads(**b), label="workload")
    assert isinstance(spec, WorkloadSpec)
    assert spec.prompt.max + spec.output.max <= b["max_model_len"]
    assert S.worst_case_tokens(spec) <= b["budget_tokens"]
    assert 1 <= spec.num_requests <= b.get("max_requests", 8)
    assert spec.output.max <= b.get("max_output_tokens", b["max_model_len"])
    if b.get("prefix") is True:
        assert spec.prefix.fraction > 0 and spec.prefix.length >= b.get("min_prefix_tokens", 1)
    if b.get("prefix") is False:
        assert not spec.prefix.active
    if spec.prefix.active:
        assert spec.prefix.length < spec.prompt.min
    assert {spec.prompt.kind, spec.output.kind} <= set(b.get("length_kinds", S.LENGTH_KINDS)) | {"fixed"}
    # It builds, and what it builds stays within the bounds too (not only the worst case).
    requests = build_requests(spec, VOCAB)
    assert len(requests) == spec.num_requests
    assert sum(len(r.prompt) + r.output_tokens for r in requests) <= b["budget_tokens"]
    assert all(len(r.prompt) + r.output_tokens <= b["max_model_len"] for r in requests)


@PURE
@given(S.workloads(max_model_len=1024, budget_tokens=8192, warmup=2))
def test_workloads_round_trip_through_json_with_the_same_hash(spec):
    again = WorkloadSpec.from_json(json.loads(json.dumps(spec.to_json(), allow_nan=False)))
    assert again == spec
    assert again.spec_hash() == spec.spec_hash()
    assert S.worst_case_tokens(spec) <= 8192   # warm-up requests are paid from the budget


@PURE
@given(st.integers(1, 300).flatmap(lambda lo: st.tuples(st.just(lo), st.integers(lo, lo + 3000))).flatmap(
    lambda b: st.tuples(st.just(b), S.lengths(*b))), st.integers(0, 2**32 - 1))
def test_lengths_sample_inside_their_bounds(bounds_and_lengths, seed):
    (low, high), lengths = bounds_and_lengths
    assert low <= lengths.min <= lengths.max <= high
    drawn = lengths.sample(np.random.default_rng(seed), 200)   # lognormal never gives up
    assert drawn.min() >= lengths.min and drawn.max() <= lengths.max


@PURE
@given(S.arrivals(min_rate=0.5, max_rate=20.0, max_concurrency=4, max_ramp_s=2.0), st.integers(1, 50))
def test_arrivals_are_valid_processes(arrival, n):
    times = offsets(arrival, n, np.random.default_rng(0))
    if arrival.kind == "concurrency":
        assert times is None and 1 <= arrival.concurrency <= 4 and 0 <= arrival.ramp_s <= 2.0
    else:
        assert times[0] == 0 and np.all(np.diff(times) >= 0)
        assert math.isinf(arrival.rate) or 0.5 <= arrival.rate <= 20.0


@PURE
@given(S.prefix_sharing(max_length=50, min_length=3, max_groups=3, requests=7))
def test_prefix_sharing_groups_at_least_two_requests(prefix):
    assert 3 <= prefix.length <= 50 and 1 <= prefix.groups <= 3
    assert round(prefix.fraction * 7) >= 2


def test_the_arrivals_parameter_takes_a_value_or_a_strategy():
    spec = find(S.workloads(arrivals=concurrency(1)), lambda s: True)
    assert spec.arrival == concurrency(1)
    spec = find(S.workloads(arrivals=S.arrivals(kinds=["gamma"])), lambda s: True)
    assert spec.arrival.kind == "gamma"


# --- shrinking --------------------------------------------------------------------------------

def test_shrinking_reaches_a_minimal_workload_part_by_part():
    # Ask for "at least 3 requests and a shared prefix": the minimal such workload is exactly
    # 3 requests of the shortest prompts that can carry a 1-token prefix, 1 output token, the
    # simplest arrival process and token seed 0. Only a strategy that draws its parts gets there.
    spec = find(S.workloads(max_model_len=512, budget_tokens=4096),
                lambda s: s.num_requests >= 3 and s.prefix.active,
                settings=settings(max_examples=2000, database=None, derandomize=True))
    assert spec.num_requests == 3
    assert (spec.prompt.kind, spec.prompt.value) == ("fixed", 2)
    assert (spec.output.kind, spec.output.value) == ("fixed", 1)
    assert spec.prefix.length == 1 and spec.prefix.groups == 1
    assert spec.arrival.kind == S.ARRIVAL_KINDS[0] and spec.seed == 0


def test_shrinking_finds_the_budget_boundary():
    spec = find(S.workloads(max_model_len=512, budget_tokens=1000), lambda s: S.worst_case_tokens(s) >= 900,
                settings=settings(max_examples=2000, database=None, derandomize=True))
    assert 900 <= S.worst_case_tokens(spec) <= 1000


# --- fixed_workload ---------------------------------------------------------------------------

BENCH_BOUNDS = dict(max_model_len=2048, budget_tokens=20_000, max_requests=32, min_prompt_tokens=16,
                    max_output_tokens=64)
#: Pinned: a change here means every baseline keyed on a fixed workload starts over. Change the
#: composition in strategies.py only on purpose, and then update these hashes.
GOLDEN = {
    0: "de678b676e8a2f69057c04dbe9ed2fba34c1d283023023ed12a977790785ab2d",
    7: "4a2c6e345ed3383a9a14345c33188f7eb4dc100e77308e06bb9acaeee7a64873",
}


def _fixed_hashes() -> dict[int, str]:
    return {seed: S.fixed_workload(seed, **BENCH_BOUNDS).spec_hash() for seed in GOLDEN}


def test_fixed_workload_is_deterministic_and_bounded():
    a = S.fixed_workload(3, **BENCH_BOUNDS)
    b = S.fixed_workload(3, **BENCH_BOUNDS)
    assert a == b and a.spec_hash() == b.spec_hash()
    assert S.worst_case_tokens(a) <= BENCH_BOUNDS["budget_tokens"]
    hashes = {S.fixed_workload(seed, **BENCH_BOUNDS).spec_hash() for seed in range(30)}
    assert len(hashes) >= 28   # different seeds pick different workloads
    for seed in range(200):
        spec = S.fixed_workload(seed, max_model_len=300, budget_tokens=900, prefix=True, min_prefix_tokens=32)
        assert spec.prefix.length >= 32 and S.worst_case_tokens(spec) <= 900
        build_requests(spec, VOCAB)


def test_fixed_workload_is_the_same_in_a_fresh_interpreter():
    # Another process, another hash seed, hypothesis in another state: the same hashes.
    code = ("import json; from pytest_disagg import strategies as S; "
            f"print(json.dumps({{s: S.fixed_workload(s, **{BENCH_BOUNDS!r}).spec_hash() for s in {list(GOLDEN)!r}}}))")
    env = dict(os.environ, PYTHONHASHSEED="12345", HYPOTHESIS_PROFILE="nightly")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert {int(k): v for k, v in json.loads(out).items()} == _fixed_hashes()


def test_fixed_workload_hashes_are_pinned():
    got = _fixed_hashes()
    for seed, want in GOLDEN.items():
        assert got[seed] == want, (f"fixed_workload({seed}) changed: baselines keyed on it no longer match "
                                   f"({S.fixed_workload(seed, **BENCH_BOUNDS).to_json()})")


def test_fixed_workload_takes_values_not_strategies():
    with pytest.raises(TypeError, match="not a strategy"):
        S.fixed_workload(0, arrivals=S.arrivals())
    assert S.fixed_workload(0, arrivals=poisson(2.0)).arrival == poisson(2.0)
    with pytest.raises(InvalidArgument, match="seed"):
        S.fixed_workload(-1)


# --- bad bounds -------------------------------------------------------------------------------

@pytest.mark.parametrize("bounds, message", [
    (dict(budget_tokens=5, min_requests=3), "cannot pay for the smallest workload"),
    (dict(max_model_len=10, min_prompt_tokens=10), "does not fit max_model_len"),
    (dict(prefix=True, min_prefix_tokens=64, max_prompt_tokens=64), "prefix"),
    (dict(min_requests=5, max_requests=2), "min_requests"),
    (dict(arrival_kinds=["trace"]), "arrival kinds"),
    (dict(length_kinds=[]), "length kinds"),
    (dict(min_rate=0), "min_rate"),
    (dict(arrivals="poisson"), "arrivals must be"),
])
def test_impossible_bounds_are_refused_up_front(bounds, message):
    with pytest.raises(InvalidArgument, match=message):
        S.workloads(**bounds)


# --- profiles and replay ----------------------------------------------------------------------

def test_profiles_are_registered_with_the_documented_settings():
    ci, nightly = settings.get_profile("ci"), settings.get_profile("nightly")
    assert ci.derandomize and ci.deadline is None and ci.database is None and ci.print_blob
    assert HealthCheck.too_slow in ci.suppress_health_check
    assert not nightly.derandomize and nightly.deadline is None and nightly.max_examples > ci.max_examples
    assert S.deployment_examples("ci") < S.deployment_examples("nightly")
    assert S.deployment_examples("some-other-profile") == S.deployment_examples("ci")


def test_deployment_settings_follow_the_active_profile():
    previous = settings.get_current_profile_name()
    try:
        settings.load_profile("nightly")
        s = S.deployment_settings()
        assert s.max_examples == S.DEPLOYMENT_EXAMPLES["nightly"] and not s.derandomize
        settings.load_profile("default")
        s = S.deployment_settings()
        assert s.max_examples == S.DEPLOYMENT_EXAMPLES["ci"] and s.derandomize and s.deadline is None
    finally:
        settings.load_profile(previous)


def test_hypothesis_profile_environment_variable_picks_the_profile():
    code = "from pytest_disagg import strategies as S; print(S.active_profile(), S.deployment_settings().max_examples)"
    for name in S.PROFILES:
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, HYPOTHESIS_PROFILE=name),
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [name, str(S.DEPLOYMENT_EXAMPLES[name])]
    bad = subprocess.run([sys.executable, "-W", "error", "-c", code], env=dict(os.environ, HYPOTHESIS_PROFILE="nope"),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "not a registered hypothesis profile" in bad.stderr


def test_a_printed_workload_replays(tmp_path, monkeypatch):
    spec = S.fixed_workload(11, max_model_len=256, budget_tokens=512)
    monkeypatch.setenv(S.REPLAY_ENV, json.dumps(spec.to_json()))
    assert S.replay_workload() == spec
    assert find(S.replayable(S.workloads()), lambda s: True) == spec
    path = tmp_path / "failing.json"
    path.write_text(json.dumps({"workload": spec.to_json(), "medium": "nixl-cpu-pc0"}))
    monkeypatch.setenv(S.REPLAY_ENV, str(path))
    assert S.replay_workload() == spec
    monkeypatch.delenv(S.REPLAY_ENV)
    assert S.replay_workload() is None
