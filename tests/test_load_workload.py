"""Workload specs: validation, canonical JSON and its hash, prompts with exact lengths and shared prefixes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import pytest

from pytest_disagg.load import arrivals
from pytest_disagg.load.workload import (SLO, Lengths, PrefixSharing, WorkloadError, WorkloadSpec, build_requests,
                                         fixed, lognormal, sweep, uniform)


def spec(**kw) -> WorkloadSpec:
    base = dict(arrival=arrivals.poisson(4.0), num_requests=50, prompt=uniform(20, 40), output=fixed(8), seed=3)
    base.update(kw)
    return WorkloadSpec(**base)


def test_spec_hash_is_sha256_of_the_canonical_json_without_the_name():
    s = WorkloadSpec(arrival=arrivals.constant(math.inf), num_requests=2, prompt=fixed(4), output=fixed(2), name="x")
    canonical = ('{"arrival":{"kind":"constant","rate":"inf"},"endpoint":"completions","max_wall_s":600.0,'
                 '"num_requests":2,"output":{"kind":"fixed","value":2},"prefix":{"fraction":0.0,"groups":0,'
                 '"length":0},"prompt":{"kind":"fixed","value":4},"request_timeout_s":300.0,"seed":0,"slo":{},'
                 '"warmup":0}')
    assert s.spec_hash() == hashlib.sha256(canonical.encode()).hexdigest()
    assert dataclasses.replace(s, name="other").spec_hash() == s.spec_hash()


def test_spec_hash_changes_with_every_field_and_survives_json():
    s = spec(prefix=PrefixSharing(0.5, 2, 10), slo=SLO(ttft_ms=100), warmup=2)
    variants = [dataclasses.replace(s, seed=4), dataclasses.replace(s, num_requests=51),
                dataclasses.replace(s, prompt=uniform(20, 41)), dataclasses.replace(s, slo=SLO(ttft_ms=101)),
                dataclasses.replace(s, arrival=arrivals.gamma(4.0, 2.0)), dataclasses.replace(s, warmup=3),
                dataclasses.replace(s, prefix=PrefixSharing(0.5, 2, 11))]
    hashes = {v.spec_hash() for v in variants} | {s.spec_hash()}
    assert len(hashes) == len(variants) + 1
    again = WorkloadSpec.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s and again.spec_hash() == s.spec_hash()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_requests=0), "num_requests"),
    (dict(prompt=None), "prompt and output must be Lengths"),
    (dict(prefix=PrefixSharing(0.5, 2, 20)), "prefix length 20 must be shorter"),
    (dict(max_wall_s=math.inf), "max_wall_s"),
    (dict(endpoint="embeddings"), "endpoint"),
    (dict(warmup=-1), "warmup"),
])
def test_bad_specs_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(WorkloadError, match=message):
        spec(**kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: Lengths("fixed", value=0), "fixed length"),
    (lambda: uniform(10, 5), "low 10 > high 5"),
    (lambda: lognormal(100, 0, 1, 10), "sigma"),
    (lambda: PrefixSharing(1.5, 1, 1), "fraction"),
    (lambda: PrefixSharing(0.5, 0, 4), "groups >= 1"),
    (lambda: SLO(tpot_ms=-1), "tpot_ms"),
])
def test_bad_parts_are_rejected(make, message):
    with pytest.raises(WorkloadError, match=message):
        make()


def test_lengths_stay_in_bounds_and_lognormal_has_its_median():
    import numpy as np
    rng = np.random.default_rng(0)
    draws = lognormal(200, 0.5, 50, 1000).sample(rng, 5000)
    assert draws.min() >= 50 and draws.max() <= 1000
    assert 170 < np.median(draws) < 230
    u = uniform(3, 6).sample(rng, 2000)
    assert set(u.tolist()) == {3, 4, 5, 6}
    with pytest.raises(WorkloadError, match="almost never"):
        lognormal(10, 0.1, 500, 600).sample(rng, 10)


def test_requests_have_exact_lengths_ids_and_offsets():
    s = spec(warmup=3)
    reqs = build_requests(s, vocab_size=100, avoid_ids=(0, 1, 2))
    warm, measured = reqs[:3], reqs[3:]
    assert all(r.warmup and r.offset_s is None for r in warm)
    assert len(measured) == 50 and not any(r.warmup for r in measured)
    assert len({r.request_id for r in reqs}) == len(reqs)
    assert all(20 <= len(r.prompt) <= 40 and r.output_tokens == 8 for r in reqs)
    assert all(3 <= t < 100 for r in reqs for t in r.prompt)
    offsets = [r.offset_s for r in measured]
    assert offsets[0] == 0.0 and offsets == sorted(offsets)


def test_same_seed_same_requests_and_warmup_does_not_change_the_measured_ones():
    a = build_requests(spec(), 1000)
    assert build_requests(spec(), 1000) == a
    assert [r for r in build_requests(spec(warmup=5), 1000) if not r.warmup] == a
    assert build_requests(spec(seed=4), 1000) != a


def test_prefix_groups_share_exactly_k_tokens():
    k = 12
    s = spec(num_requests=200, prompt=uniform(k + 1, 60), prefix=PrefixSharing(0.6, 4, k))
    reqs = build_requests(s, vocab_size=50)
    grouped = [r for r in reqs if r.prefix_group is not None]
    assert len(grouped) == 120
    assert {r.prefix_group for r in grouped} <= set(range(4))
    for g in {r.prefix_group for r in grouped}:
        members = [r for r in grouped if r.prefix_group == g]
        assert len({r.prompt[:k] for r in members}) == 1                      # the first K tokens agree
        assert len({r.prompt[k] for r in members}) == len(members)            # token K+1 differs for all
    prefixes = {r.prompt[:k] for r in grouped}
    assert not any(r.prompt[:k] in prefixes for r in reqs if r.prefix_group is None)


def test_prefix_group_larger_than_vocab_cannot_be_told_apart():
    s = spec(num_requests=30, prompt=fixed(5), prefix=PrefixSharing(1.0, 1, 2))
    with pytest.raises(WorkloadError, match="token ids that can tell them apart"):
        build_requests(s, vocab_size=10)


def test_vocab_too_small_is_an_error():
    with pytest.raises(WorkloadError, match="leaves < 2 token ids"):
        build_requests(spec(), vocab_size=3, avoid_ids=(0, 1))


def test_trace_workload_takes_lengths_groups_and_times_from_the_trace(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"arrival_s": 1.0, "prompt_tokens": 10, "output_tokens": 3, "prefix_group": 0},
            {"arrival_s": 1.5, "prompt_tokens": 12, "output_tokens": 4, "prefix_group": None},
            {"arrival_s": 3.0, "prompt_tokens": 9, "output_tokens": 5, "prefix_group": 0}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    s = WorkloadSpec(arrival=arrivals.trace(str(path), scale=2.0), num_requests=3, prefix=PrefixSharing(length=6))
    reqs = build_requests(s, vocab_size=500)
    assert [len(r.prompt) for r in reqs] == [10, 12, 9] and [r.output_tokens for r in reqs] == [3, 4, 5]
    assert [r.offset_s for r in reqs] == [0.0, 0.25, 1.0]
    assert reqs[0].prompt[:6] == reqs[2].prompt[:6] and reqs[0].prompt[6] != reqs[2].prompt[6]
    digest = s.spec_hash()
    path.write_text(path.read_text().replace('"output_tokens": 5', '"output_tokens": 6'))
    assert s.spec_hash() != digest      # an edited trace is a different workload
    with pytest.raises(WorkloadError, match="set prefix=PrefixSharing"):
        build_requests(WorkloadSpec(arrival=arrivals.trace(str(path)), num_requests=3), vocab_size=500)
    with pytest.raises(WorkloadError, match="carries its own lengths"):
        WorkloadSpec(arrival=arrivals.trace(str(path)), num_requests=3, prompt=fixed(3), output=fixed(3))


def test_shipped_traces_build():
    for path in sorted(arrivals.TRACES_DIR.glob("*.jsonl")):
        rows = arrivals.read_trace(path.name)
        k = min((r.prompt_tokens for r in rows if r.prefix_group is not None), default=2) - 1
        s = WorkloadSpec(arrival=arrivals.trace(path.name), num_requests=len(rows), prefix=PrefixSharing(length=k))
        reqs = build_requests(s, vocab_size=32000)
        assert len(reqs) == len(rows)


def test_sweep_changes_only_the_rate():
    specs = sweep(spec(), [1, 2, 8])
    assert [s.arrival.rate for s in specs] == [1.0, 2.0, 8.0]
    assert len({s.spec_hash() for s in specs}) == 3
    with pytest.raises(WorkloadError, match="rate-based"):
        sweep(spec(arrival=arrivals.concurrency(4)), [1])
