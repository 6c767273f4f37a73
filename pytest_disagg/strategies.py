"""Hypothesis strategies for workloads, the settings profiles the suite runs them under, and
``fixed_workload`` for benchmarks that must draw the same workload on every machine.

Why the parts are drawn one by one: hypothesis shrinks what a strategy *draws*. A strategy that
drew one seed and built the workload from it could only shrink the seed, which says nothing about
the workload; here the request count, the prompt and output length distributions, the prefix
groups and the arrival process are each drawn from their own bounded range, so a failing property
shrinks towards fewer requests, shorter prompts, no prefix sharing and simpler arrivals. Only the
token ids inside the prompts come from ``WorkloadSpec.seed`` (drawn too, shrinking to 0).

Why every workload is bounded: a property runs against real vLLM servers, so an example has a
cost. ``workloads(max_model_len=..., budget_tokens=...)`` guarantees, whatever is drawn, that
every request fits the model (prompt + output <= max_model_len) and that the run's worst case,
``worst_case_tokens(spec)`` = requests x (longest prompt + longest output), is within the budget.

Why one composition for two sources of randomness: ``workloads()`` draws through hypothesis, and
``fixed_workload(seed, **bounds)`` draws the same composition from ``random.Random(seed)``, using
only ``random()`` (whose sequence Python guarantees across versions). A benchmark that gates
against a baseline keyed by ``spec.spec_hash()`` therefore gets the same workload on every machine
and under every hypothesis version; hypothesis's own seeded generation is not stable across its
releases (and tries the simplest example first).

Settings profiles (registered when this module is imported; chosen with the environment variable
``HYPOTHESIS_PROFILE=ci|nightly``, or hypothesis's ``--hypothesis-profile`` once this module is
imported before pytest configures hypothesis, i.e. from the plugin):

- ``ci``: hypothesis's CI defaults (derandomized, no deadline, no example database, blob printed
  for replay, ``too_slow`` suppressed); properties on real deployments run
  ``DEPLOYMENT_EXAMPLES["ci"]`` (3) examples each.
- ``nightly``: random examples, the example database kept, no deadline; properties on real
  deployments run ``DEPLOYMENT_EXAMPLES["nightly"]`` (20) examples each.

The profile's own ``max_examples`` stays hypothesis's (100 for ``ci``, 500 for ``nightly``) so
that cheap pure-Python properties elsewhere in the suite are not cut to a handful of examples;
tests on real servers take :func:`deployment_settings`, which applies the small budget.

Replaying a failure: a failing property prints the workload as JSON (``spec.to_json()``). Put
that JSON (or a path to a file holding it) in ``DISAGG_REPLAY_WORKLOAD`` and every property built
with :func:`replayable` runs exactly that workload.
"""
from __future__ import annotations

import json
import math
import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from .load.arrivals import Arrival, all_at_once, concurrency, constant, gamma, poisson
from .load.workload import Lengths, PrefixSharing, WorkloadSpec, fixed, lognormal, uniform

PROFILE_ENV = "HYPOTHESIS_PROFILE"
REPLAY_ENV = "DISAGG_REPLAY_WORKLOAD"
PROFILES = ("ci", "nightly")
#: Examples per property on real deployments, by active profile (any other profile: "ci"'s).
DEPLOYMENT_EXAMPLES = {"ci": 3, "nightly": 20}

LENGTH_KINDS = ("fixed", "uniform", "lognormal")
#: Arrival kinds a workload strategy draws from. Traces are left out: a trace carries its own
#: lengths, which no budget can bound.
ARRIVAL_KINDS = ("poisson", "gamma", "constant", "all_at_once", "concurrency")
MAX_SEED = 2**32 - 1


# --- settings profiles ------------------------------------------------------------------------

def register_profiles() -> None:
    """Register ``ci`` and ``nightly`` (idempotent; called on import)."""
    common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", derandomize=True, database=None, **common)
    settings.register_profile("nightly", max_examples=500, derandomize=False, **common)


def load_profile_from_env(environ: dict | None = None) -> str | None:
    """Load the profile named by ``HYPOTHESIS_PROFILE``, if set and registered; return its name.
    An unknown name is a warning, not an error: a conftest.py may register it later."""
    name = (os.environ if environ is None else environ).get(PROFILE_ENV, "").strip()
    if not name:
        return None
    try:
        settings.load_profile(name)
    except InvalidArgument:
        warnings.warn(f"{PROFILE_ENV}={name!r} is not a registered hypothesis profile (ours: {', '.join(PROFILES)}); "
                      "left the active profile as it was", stacklevel=2)
        return None
    return name


def active_profile() -> str:
    return settings.get_current_profile_name()


def deployment_examples(profile: str | None = None) -> int:
    """How many examples a property on real servers runs under ``profile`` (default: active)."""
    return DEPLOYMENT_EXAMPLES.get(profile or active_profile(), DEPLOYMENT_EXAMPLES["ci"])


def deployment_settings(**overrides: Any) -> settings:
    """Settings for a property that runs against real servers: the active profile, a small
    example budget (:data:`DEPLOYMENT_EXAMPLES`), no deadline, ``too_slow`` suppressed.

    ``ci`` keeps the run derandomized, so every deployment that a parametrized property runs on
    sees the same examples (which lets a reference computed once serve all of them)."""
    profile = active_profile()
    base = settings.get_profile(profile)
    values: dict[str, Any] = dict(max_examples=deployment_examples(profile), deadline=None,
                                  suppress_health_check=list(set(base.suppress_health_check) | {HealthCheck.too_slow}))
    if profile not in PROFILES:   # local default profile: behave like ci (cheap and reproducible)
        values.update(derandomize=True, database=None, print_blob=True)
    values.update(overrides)
    return settings(base, **values)


register_profiles()
load_profile_from_env()


# --- two sources of draws ---------------------------------------------------------------------

class _Source:
    """What the composition below needs: bounded integers and reals, a pick, and a way to
    resolve a parameter that may itself be a strategy."""

    def integer(self, low: int, high: int) -> int: ...
    def real(self, low: float, high: float) -> float: ...
    def pick(self, options: Sequence) -> Any: ...
    def resolve(self, value: Any) -> Any: ...


class _HypothesisSource(_Source):
    def __init__(self, draw: Callable):
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def real(self, low: float, high: float) -> float:
        if low == high:
            return low
        return self.draw(st.floats(low, high, allow_nan=False, allow_infinity=False))

    def pick(self, options: Sequence) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def resolve(self, value: Any) -> Any:
        return self.draw(value) if isinstance(value, SearchStrategy) else value


class _SeededSource(_Source):
    """Draws from ``random.Random(seed).random()`` only: that sequence is stable across Python
    versions (the other methods of ``random`` are not promised to be)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return low + min(high - low, int(self.rng.random() * (high - low + 1)))

    def real(self, low: float, high: float) -> float:
        return low + self.rng.random() * (high - low)

    def pick(self, options: Sequence) -> Any:
        options = list(options)
        return options[self.integer(0, len(options) - 1)]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, SearchStrategy):
            raise TypeError("fixed_workload draws without hypothesis: give values (an Arrival, kinds, bounds), "
                            f"not a strategy ({value!r})")
        return value


def _round(x: float, decimals: int = 2) -> float:
    """Drawn reals with few decimals: readable JSON and hashes."""
    return round(x, decimals)


# --- the parts --------------------------------------------------------------------------------

def _check_kinds(kinds: Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in known]
    if not kinds or bad:
        raise InvalidArgument(f"{what} kinds must be a non-empty subset of {known}, got {kinds}")
    return kinds


def _lengths(src: _Source, low: int, high: int, kinds: Sequence[str]) -> Lengths:
    if not (1 <= low <= high):
        raise InvalidArgument(f"lengths need 1 <= min_value <= max_value, got [{low}, {high}]")
    usable = [k for k in kinds if k == "fixed" or high > low]
    kind = src.pick(usable or ["fixed"])
    if kind == "fixed":
        return fixed(src.integer(low, high))
    a = src.integer(low, high - 1)
    b = src.integer(a + 1, high)
    if kind == "uniform":
        return uniform(a, b)
    # lognormal truncated to [a, b]: the median sits in the middle half of [ln a, ln b] and sigma
    # is at most half that log-range, so most draws land inside and the rejection sampling in
    # Lengths.sample finishes (a median far outside the bounds would make it give up).
    la, lb = math.log(a), math.log(b)
    median = _round(math.exp(la + src.real(0.25, 0.75) * (lb - la)))
    sigma = max(_round(src.real(0.1, 1.0) * min(1.5, (lb - la) / 2), 4), 1e-4)
    return lognormal(median, sigma, a, b)


def _prefix(src: _Source, requests: int | None, min_length: int, max_length: int, max_groups: int) -> PrefixSharing:
    length = src.integer(min_length, max_length)
    if requests is None:
        fraction = _round(src.real(0.05, 1.0), 3)
        groups = src.integer(1, max_groups)
    else:
        grouped = src.integer(min(2, requests), requests)   # requests in groups (>= 2 when possible)
        fraction = grouped / requests
        groups = src.integer(1, max(1, min(max_groups, grouped // 2)))
    return PrefixSharing(fraction=fraction, groups=groups, length=length)


def _arrival(src: _Source, kinds: Sequence[str], min_rate: float, max_rate: float, max_cv: float,
             max_concurrency: int, max_ramp_s: float) -> Arrival:
    kind = src.pick(kinds)
    if kind == "all_at_once":
        return all_at_once()
    if kind == "concurrency":
        n = src.integer(1, max_concurrency)
        ramp = _round(src.real(0.0, max_ramp_s)) if max_ramp_s > 0 else 0.0
        return concurrency(n, ramp)
    rate = min(max_rate, max(min_rate, _round(src.real(min_rate, max_rate))))
    if kind == "poisson":
        return poisson(rate)
    if kind == "constant":
        return constant(rate)
    return gamma(rate, min(max_cv, max(0.25, _round(src.real(0.25, max_cv)))))


@dataclass(frozen=True)
class _Bounds:
    """The validated bounds of :func:`workloads`; shared with :func:`fixed_workload`."""

    max_model_len: int
    budget_tokens: int
    min_requests: int
    max_requests: int
    min_prompt_tokens: int
    max_prompt_tokens: int
    min_output_tokens: int
    max_output_tokens: int
    length_kinds: tuple[str, ...]
    arrivals: Any                 # None (drawn), an Arrival, or a strategy of Arrivals
    arrival_kinds: tuple[str, ...]
    min_rate: float
    max_rate: float
    max_cv: float
    max_concurrency: int
    max_ramp_s: float
    prefix: bool | None           # None: drawn; True: always; False: never
    min_prefix_tokens: int
    max_prefix_tokens: int
    max_prefix_groups: int
    warmup: int
    seeds: Any                    # None (drawn) or an int or a strategy of ints
    endpoint: str
    request_timeout_s: float
    max_wall_s: float
    name: str


def _bounds(max_model_len: int = 2048, budget_tokens: int = 4096, *, min_requests: int = 1, max_requests: int = 8,
            min_prompt_tokens: int = 1, max_prompt_tokens: int | None = None, min_output_tokens: int = 1,
            max_output_tokens: int | None = None, length_kinds: Sequence[str] = LENGTH_KINDS, arrivals: Any = None,
            arrival_kinds: Sequence[str] = ARRIVAL_KINDS, min_rate: float = 1.0, max_rate: float = 64.0,
            max_cv: float = 4.0, max_concurrency: int = 8, max_ramp_s: float = 0.0, prefix: bool | None = None,
            min_prefix_tokens: int = 1, max_prefix_tokens: int | None = None, max_prefix_groups: int = 4,
            warmup: int = 0, seeds: Any = None, endpoint: str = "completions", request_timeout_s: float = 300.0,
            max_wall_s: float = 600.0, name: str = "") -> _Bounds:
    def positive(label: str, v) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidArgument(f"{label} must be an integer >= 1, got {v!r}")

    for label in ("max_model_len", "budget_tokens", "min_requests", "max_requests", "min_prompt_tokens",
                  "min_output_tokens", "min_prefix_tokens", "max_prefix_groups", "max_concurrency"):
        positive(label, locals()[label])
    if min_requests > max_requests:
        raise InvalidArgument(f"min_requests {min_requests} > max_requests {max_requests}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InvalidArgument(f"warmup must be an integer >= 0, got {warmup!r}")
    if not (0 < min_rate <= max_rate < math.inf):
        raise InvalidArgument(f"need 0 < min_rate <= max_rate < inf, got [{min_rate}, {max_rate}]")
    if not (0.25 <= max_cv < math.inf):
        raise InvalidArgument(f"max_cv must be finite and >= 0.25, got {max_cv}")
    if not (0 <= max_ramp_s < math.inf):
        raise InvalidArgument(f"max_ramp_s must be finite and >= 0, got {max_ramp_s}")
    if prefix not in (None, True, False):
        raise InvalidArgument(f"prefix must be None (drawn), True or False, got {prefix!r}")
    if arrivals is not None and not isinstance(arrivals, (Arrival, SearchStrategy)):
        raise InvalidArgument(f"arrivals must be None, an Arrival or a strategy of Arrivals, got {arrivals!r}")
    if isinstance(arrivals, Arrival) and arrivals.kind == "trace":
        raise InvalidArgument("trace arrivals carry their own lengths, which the budget cannot bound")
    arrival_kinds = _check_kinds(arrival_kinds, ARRIVAL_KINDS, "arrival")
    length_kinds = _check_kinds(length_kinds, LENGTH_KINDS, "length")
    min_prompt = max(min_prompt_tokens, min_prefix_tokens + 1) if prefix else min_prompt_tokens
    if min_prompt + min_output_tokens > max_model_len:
        raise InvalidArgument(f"the shortest request ({min_prompt} + {min_output_tokens} tokens) does not fit "
                              f"max_model_len={max_model_len}")
    max_prompt = max_model_len - min_output_tokens if max_prompt_tokens is None else max_prompt_tokens
    max_output = max_model_len - min_prompt if max_output_tokens is None else max_output_tokens
    positive("max_prompt_tokens", max_prompt)
    positive("max_output_tokens", max_output)
    max_prefix = max_prompt - 1 if max_prefix_tokens is None else max_prefix_tokens
    if prefix and min_prefix_tokens > max_prefix:
        raise InvalidArgument(f"min_prefix_tokens {min_prefix_tokens} > max_prefix_tokens {max_prefix}")
    if min_prompt > max_prompt:
        raise InvalidArgument(f"prompts need {min_prompt} tokens at least (prefix {min_prefix_tokens} + 1) "
                              f"but max_prompt_tokens is {max_prompt}")
    if min_output_tokens > max_output:
        raise InvalidArgument(f"min_output_tokens {min_output_tokens} > max_output_tokens {max_output}")
    cheapest = (min_requests + warmup) * (min_prompt + min_output_tokens)
    if cheapest > budget_tokens:
        raise InvalidArgument(f"budget_tokens={budget_tokens} cannot pay for the smallest workload "
                              f"({min_requests + warmup} requests x {min_prompt + min_output_tokens} tokens = {cheapest})")
    if endpoint not in ("completions", "chat"):
        raise InvalidArgument(f"endpoint must be completions or chat, got {endpoint!r}")
    return _Bounds(max_model_len, budget_tokens, min_requests, max_requests, min_prompt, max_prompt,
                   min_output_tokens, max_output, length_kinds, arrivals, arrival_kinds, float(min_rate),
                   float(max_rate), float(max_cv), max_concurrency, float(max_ramp_s), prefix, min_prefix_tokens,
                   max_prefix, max_prefix_groups, warmup, seeds, endpoint, float(request_timeout_s),
                   float(max_wall_s), name)


def _workload(src: _Source, b: _Bounds) -> WorkloadSpec:
    per_min = b.min_prompt_tokens + b.min_output_tokens
    n = src.integer(b.min_requests, min(b.max_requests, b.budget_tokens // per_min - b.warmup))
    per_request = min(b.max_model_len, b.budget_tokens // (n + b.warmup))   # >= per_min by construction
    prompt = _lengths(src, b.min_prompt_tokens, min(b.max_prompt_tokens, per_request - b.min_output_tokens),
                      b.length_kinds)
    output = _lengths(src, b.min_output_tokens, min(b.max_output_tokens, per_request - prompt.max), b.length_kinds)
    can_share = prompt.min >= b.min_prefix_tokens + 1
    share = can_share and (b.prefix if b.prefix is not None else src.pick([False, True]))
    prefix = (_prefix(src, n, b.min_prefix_tokens, min(b.max_prefix_tokens, prompt.min - 1), b.max_prefix_groups)
              if share else PrefixSharing())
    if b.arrivals is None:
        arrival = _arrival(src, b.arrival_kinds, b.min_rate, b.max_rate, b.max_cv, b.max_concurrency, b.max_ramp_s)
    else:
        arrival = src.resolve(b.arrivals)
        if not isinstance(arrival, Arrival) or arrival.kind == "trace":
            raise InvalidArgument(f"arrivals drew {arrival!r}: need a non-trace Arrival")
    seed = src.integer(0, MAX_SEED) if b.seeds is None else src.resolve(b.seeds)
    return WorkloadSpec(arrival=arrival, num_requests=n, prompt=prompt, output=output, prefix=prefix,
                        warmup=b.warmup, seed=seed, endpoint=b.endpoint, request_timeout_s=b.request_timeout_s,
                        max_wall_s=b.max_wall_s, name=b.name)


# --- public strategies ------------------------------------------------------------------------

def lengths(min_value: int = 1, max_value: int = 256, kinds: Sequence[str] = LENGTH_KINDS) -> SearchStrategy[Lengths]:
    """Token-length distributions within ``[min_value, max_value]``: ``fixed``, ``uniform`` or a
    ``lognormal`` truncated to its bounds (its median and sigma chosen so that sampling succeeds)."""
    kinds = _check_kinds(kinds, LENGTH_KINDS, "length")
    if not (isinstance(min_value, int) and isinstance(max_value, int) and 1 <= min_value <= max_value):
        raise InvalidArgument(f"lengths need integers 1 <= min_value <= max_value, got [{min_value}, {max_value}]")

    @st.composite
    def build(draw):
        return _lengths(_HypothesisSource(draw), min_value, max_value, kinds)

    return build()


def prefix_sharing(max_length: int = 128, min_length: int = 1, max_groups: int = 4,
                   requests: int | None = None) -> SearchStrategy[PrefixSharing]:
    """Active prefix sharing: a fraction of the requests in 1..``max_groups`` groups whose
    members share their first ``min_length..max_length`` tokens. With ``requests`` the fraction
    is k/requests for k >= 2 grouped requests (so that groups can have two members)."""
    if not (1 <= min_length <= max_length) or max_groups < 1 or (requests is not None and requests < 1):
        raise InvalidArgument(f"prefix_sharing needs 1 <= min_length <= max_length, max_groups >= 1, requests >= 1; "
                              f"got {min_length}, {max_length}, {max_groups}, {requests}")

    @st.composite
    def build(draw):
        return _prefix(_HypothesisSource(draw), requests, min_length, max_length, max_groups)

    return build()


def arrivals(kinds: Sequence[str] = ARRIVAL_KINDS, *, min_rate: float = 1.0, max_rate: float = 64.0,
             max_cv: float = 4.0, max_concurrency: int = 8, max_ramp_s: float = 0.0) -> SearchStrategy[Arrival]:
    """Arrival processes: Poisson, gamma (cv in [0.25, max_cv]) and constant at a rate in
    ``[min_rate, max_rate]`` req/s, everything at once, or a closed loop of 1..``max_concurrency``."""
    kinds = _check_kinds(kinds, ARRIVAL_KINDS, "arrival")
    _bounds(min_rate=min_rate, max_rate=max_rate, max_cv=max_cv, max_concurrency=max_concurrency,
            max_ramp_s=max_ramp_s)   # validation only

    @st.composite
    def build(draw):
        return _arrival(_HypothesisSource(draw), kinds, min_rate, max_rate, max_cv, max_concurrency, max_ramp_s)

    return build()


def workloads(max_model_len: int = 2048, budget_tokens: int = 4096, **bounds: Any) -> SearchStrategy[WorkloadSpec]:
    """Whole workloads, every one within ``max_model_len`` per request and ``budget_tokens`` in
    total (worst case, see :func:`worst_case_tokens`).

    Keyword bounds: ``min_requests``/``max_requests`` (1..8), ``min_prompt_tokens``/
    ``max_prompt_tokens``, ``min_output_tokens``/``max_output_tokens``, ``length_kinds``;
    ``arrivals`` (None: drawn from ``arrival_kinds`` with ``min_rate``/``max_rate``/``max_cv``/
    ``max_concurrency``/``max_ramp_s``; an ``Arrival``; or a strategy such as
    ``arrivals(kinds=["concurrency"])``); ``prefix`` (None: drawn, True: always, False: never) with
    ``min_prefix_tokens``/``max_prefix_tokens``/``max_prefix_groups``; ``warmup`` (fixed count,
    paid from the budget); ``seeds`` (None: drawn; an int or a strategy); ``endpoint``,
    ``request_timeout_s``, ``max_wall_s``, ``name``.
    """
    b = _bounds(max_model_len, budget_tokens, **bounds)

    @st.composite
    def build(draw):
        return _workload(_HypothesisSource(draw), b)

    return build()


def fixed_workload(seed: int, max_model_len: int = 2048, budget_tokens: int = 4096, **bounds: Any) -> WorkloadSpec:
    """The workload that ``seed`` picks within the same bounds as :func:`workloads`, identical
    on every machine and hypothesis version (it draws from ``random.Random(seed)``). Benchmarks
    key their baselines on ``fixed_workload(...).spec_hash()``. ``arrivals`` and ``seeds`` must
    be values here, not strategies. Changing the composition in this module changes the hashes
    (a new baseline, never a wrong comparison)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgument(f"seed must be an integer >= 0, got {seed!r}")
    return _workload(_SeededSource(seed), _bounds(max_model_len, budget_tokens, **bounds))


def worst_case_tokens(spec: WorkloadSpec) -> int:
    """Tokens the run may process at most: every request (warm-up included) at its longest
    prompt and longest output. ``workloads(budget_tokens=B)`` only draws specs where this <= B."""
    if spec.prompt is None or spec.output is None:
        raise ValueError("a trace workload has no length bounds")
    return spec.total_requests * (spec.prompt.max + spec.output.max)


def replay_workload(environ: dict | None = None) -> WorkloadSpec | None:
    """The workload named by ``DISAGG_REPLAY_WORKLOAD`` (JSON text, or a path to a JSON file,
    as a failing property printed it), or None."""
    raw = (os.environ if environ is None else environ).get(REPLAY_ENV, "").strip()
    if not raw:
        return None
    text = raw if raw.startswith("{") else Path(raw).read_text()
    data = json.loads(text)
    return WorkloadSpec.from_json(data.get("workload", data))


def replayable(strategy: SearchStrategy[WorkloadSpec]) -> SearchStrategy[WorkloadSpec]:
    """``strategy``, or exactly the workload in ``DISAGG_REPLAY_WORKLOAD`` when it is set."""
    spec = replay_workload()
    return strategy if spec is None else st.just(spec)


__all__ = [
    "ARRIVAL_KINDS", "DEPLOYMENT_EXAMPLES", "LENGTH_KINDS", "PROFILES", "PROFILE_ENV", "REPLAY_ENV", "active_profile",
    "arrivals", "deployment_examples", "deployment_settings", "fixed_workload", "lengths", "load_profile_from_env",
    "prefix_sharing", "register_profiles", "replay_workload", "replayable", "workloads", "worst_case_tokens",
]
