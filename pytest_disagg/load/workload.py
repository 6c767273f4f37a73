"""What a run sends: a frozen, hashable workload spec, and the concrete requests built from it.

Why a spec made of small parts: a workload is part of a baseline's identity (``spec_hash()``
keys the store), so it must serialise to canonical JSON and hash the same on every machine; and
issue 7's hypothesis strategies draw each part (lengths, prefix sharing, arrivals, SLOs)
separately so that shrinking works — so every part is its own validated value object, and
``WorkloadSpec`` only composes them.

``build_requests`` is the only place randomness meets the spec. It draws from independent child
streams of ``SeedSequence(seed)`` (lengths, tokens, prefix groups, arrivals, warm-ups), so that
changing one part (say the warm-up count) leaves the others' draws unchanged. Prompts are token
ids, so their length is exact; requests in a prefix group share exactly their first K tokens
(token K+1 differs between any two members), which is what a prefix-cache benchmark needs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import arrivals as arrivals_mod
from .arrivals import Arrival

ENDPOINTS = ("completions", "chat")
_MAX_REJECTION_ROUNDS = 64


class WorkloadError(ValueError):
    """A workload spec that cannot be built into requests."""


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Lengths:
    """A token-count distribution: ``fixed(n)``, ``uniform(low, high)`` (inclusive), or
    ``lognormal(median, sigma, low, high)`` truncated to [low, high] (by rejection, so the bounds
    hold no point mass)."""

    kind: str
    value: int | None = None
    low: int | None = None
    high: int | None = None
    median: float | None = None
    sigma: float | None = None

    def __post_init__(self):
        if self.kind == "fixed":
            _positive_int("fixed length", self.value)
            if (self.low, self.high, self.median, self.sigma) != (None,) * 4:
                raise WorkloadError("a fixed length takes only value")
            return
        if self.kind not in ("uniform", "lognormal"):
            raise WorkloadError(f"length kind must be fixed, uniform or lognormal, got {self.kind!r}")
        if self.value is not None:
            raise WorkloadError(f"a {self.kind} length takes no value")
        _positive_int("low", self.low)
        _positive_int("high", self.high)
        if self.low > self.high:
            raise WorkloadError(f"low {self.low} > high {self.high}")
        if self.kind == "uniform":
            if self.median is not None or self.sigma is not None:
                raise WorkloadError("a uniform length takes only low and high")
            return
        for name, v in (("median", self.median), ("sigma", self.sigma)):
            if v is None or isinstance(v, bool) or not (0 < v < math.inf):
                raise WorkloadError(f"lognormal {name} must be finite and > 0, got {v!r}")

    @property
    def min(self) -> int:
        return self.value if self.kind == "fixed" else self.low

    @property
    def max(self) -> int:
        return self.value if self.kind == "fixed" else self.high

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` integer lengths."""
        if self.kind == "fixed":
            return np.full(n, self.value, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)
        out = np.empty(n, dtype=np.int64)
        todo = np.arange(n)
        mu = math.log(self.median)
        for _ in range(_MAX_REJECTION_ROUNDS):
            if todo.size == 0:
                return out
            draw = np.rint(rng.lognormal(mu, self.sigma, size=todo.size))
            ok = (draw >= self.low) & (draw <= self.high)
            out[todo[ok]] = draw[ok]
            todo = todo[~ok]
        raise WorkloadError(f"lognormal(median={self.median}, sigma={self.sigma}) almost never falls in "
                            f"[{self.low}, {self.high}]: choose bounds around the median")

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> "Lengths":
        try:
            return cls(**data)
        except TypeError as exc:
            raise WorkloadError(f"bad lengths {data!r}: {exc}") from None


def fixed(n: int) -> Lengths:
    return Lengths("fixed", value=n)


def uniform(low: int, high: int) -> Lengths:
    return Lengths("uniform", low=low, high=high)


def lognormal(median: float, sigma: float, low: int, high: int) -> Lengths:
    return Lengths("lognormal", low=low, high=high, median=median, sigma=sigma)


@dataclass(frozen=True)
class PrefixSharing:
    """``fraction`` of the requests are spread over ``groups`` groups whose members share their
    first ``length`` tokens. For a trace, the trace names the groups and only ``length`` is used."""

    fraction: float = 0.0
    groups: int = 0
    length: int = 0

    def __post_init__(self):
        if isinstance(self.fraction, bool) or not (0.0 <= self.fraction <= 1.0):
            raise WorkloadError(f"prefix fraction must be in [0, 1], got {self.fraction!r}")
        for name, v in (("groups", self.groups), ("length", self.length)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise WorkloadError(f"prefix {name} must be an integer >= 0, got {v!r}")
        if self.fraction > 0 and (self.groups < 1 or self.length < 1):
            raise WorkloadError("a prefix fraction > 0 needs groups >= 1 and length >= 1")

    @property
    def active(self) -> bool:
        return self.fraction > 0 or self.length > 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SLO:
    """Goodput limits in milliseconds (vLLM's ``--goodput ttft:.. tpot:.. e2el:..``); None: no limit."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def __post_init__(self):
        for name, v in dataclasses.asdict(self).items():
            if v is not None and (isinstance(v, bool) or not (0 < v < math.inf)):
                raise WorkloadError(f"SLO {name} must be finite and > 0, got {v!r}")

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class RequestSpec:
    """One concrete request: its id (unique within the run), prompt token ids, exact output
    length, scheduled send offset in seconds (None: sent by the closed loop) and prefix group."""

    request_id: str
    prompt: tuple[int, ...]
    output_tokens: int
    offset_s: float | None = None
    prefix_group: int | None = None
    warmup: bool = False


@dataclass(frozen=True)
class WorkloadSpec:
    """A whole workload. ``prompt``/``output`` are required unless the arrivals are a trace
    (which carries the lengths). ``warmup`` requests run before the measured ones and are left
    out of every figure. ``max_wall_s`` bounds the measured phase; ``request_timeout_s`` each
    request. ``name`` is a label only and is not hashed."""

    arrival: Arrival
    num_requests: int
    prompt: Lengths | None = None
    output: Lengths | None = None
    prefix: PrefixSharing = field(default_factory=PrefixSharing)
    warmup: int = 0
    max_wall_s: float = 600.0
    request_timeout_s: float = 300.0
    seed: int = 0
    slo: SLO = field(default_factory=SLO)
    endpoint: str = "completions"
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.arrival, Arrival):
            raise WorkloadError(f"arrival must be an Arrival, got {type(self.arrival).__name__}")
        _positive_int("num_requests", self.num_requests)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise WorkloadError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        for name in ("max_wall_s", "request_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (0 < v < math.inf):
                raise WorkloadError(f"{name} must be finite and > 0, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise WorkloadError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.endpoint not in ENDPOINTS:
            raise WorkloadError(f"endpoint must be one of {ENDPOINTS}, got {self.endpoint!r}")
        trace = self.arrival.kind == "trace"
        if trace:
            if self.prompt is not None or self.output is not None:
                raise WorkloadError("a trace carries its own lengths: leave prompt and output unset")
            if self.prefix.fraction or self.prefix.groups:
                raise WorkloadError("a trace names its own prefix groups: set only prefix.length")
        else:
            if not isinstance(self.prompt, Lengths) or not isinstance(self.output, Lengths):
                raise WorkloadError("prompt and output must be Lengths (fixed/uniform/lognormal)")
            if self.prefix.fraction > 0 and self.prefix.length >= self.prompt.min:
                raise WorkloadError(f"prefix length {self.prefix.length} must be shorter than the shortest prompt "
                                    f"({self.prompt.min}) so that members differ after the prefix")

    @property
    def total_requests(self) -> int:
        return self.warmup + self.num_requests

    def to_json(self) -> dict:
        out = {
            "arrival": self.arrival.to_json(), "num_requests": self.num_requests,
            "prefix": self.prefix.to_json(), "warmup": self.warmup, "max_wall_s": self.max_wall_s,
            "request_timeout_s": self.request_timeout_s, "seed": self.seed, "slo": self.slo.to_json(),
            "endpoint": self.endpoint, "name": self.name,
        }
        if self.prompt is not None:
            out["prompt"] = self.prompt.to_json()
        if self.output is not None:
            out["output"] = self.output.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> "WorkloadSpec":
        try:
            d = dict(data)
            d["arrival"] = Arrival.from_json(d["arrival"])
            for key in ("prompt", "output"):
                if d.get(key) is not None:
                    d[key] = Lengths.from_json(d[key])
            d["prefix"] = PrefixSharing(**d.get("prefix", {}))
            d["slo"] = SLO(**d.get("slo", {}))
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise WorkloadError(f"not a workload spec ({exc!r}): {data!r}"[:500]) from None

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys, no spaces), ``name`` left out; for a trace,
        the trace file's content is hashed in, so an edited trace is a different workload."""
        data = self.to_json()
        data.pop("name", None)
        if self.arrival.kind == "trace":
            data["trace_sha256"] = hashlib.sha256(arrivals_mod.resolve_trace(self.arrival.trace).read_bytes()).hexdigest()
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        lengths = "trace" if self.prompt is None else f"in={_short(self.prompt)} out={_short(self.output)}"
        prefix = f" prefix={self.prefix.fraction:g}x{self.prefix.groups}x{self.prefix.length}" if self.prefix.active else ""
        return f"{self.arrival.describe()} n={self.num_requests} {lengths}{prefix}"


def _short(lengths: Lengths) -> str:
    if lengths.kind == "fixed":
        return str(lengths.value)
    return f"{lengths.kind}[{lengths.low},{lengths.high}]"


def sweep(spec: WorkloadSpec, rates: Iterable[float]) -> list[WorkloadSpec]:
    """The same workload at several request rates (Poisson/gamma/constant arrivals only)."""
    if spec.arrival.kind not in ("poisson", "gamma", "constant"):
        raise WorkloadError(f"a rate sweep needs rate-based arrivals, not {spec.arrival.kind}")
    return [dataclasses.replace(spec, arrival=dataclasses.replace(spec.arrival, rate=float(r))) for r in rates]


# --- building requests ----------------------------------------------------------------------

def build_requests(spec: WorkloadSpec, vocab_size: int, avoid_ids: Sequence[int] = ()) -> list[RequestSpec]:
    """Warm-up requests (no prefix groups, offset None) followed by the measured ones."""
    _positive_int("vocab_size", vocab_size)
    allowed = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(list(avoid_ids), dtype=np.int64))
    if allowed.size < 2:
        raise WorkloadError(f"vocab_size {vocab_size} minus {len(avoid_ids)} avoided ids leaves < 2 token ids")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(5)]
    lengths_rng, tokens_rng, prefix_rng, arrival_rng, warmup_rng = streams
    n = spec.num_requests
    if spec.arrival.kind == "trace":
        rows = arrivals_mod.read_trace(spec.arrival.trace)
        if len(rows) < n:
            raise WorkloadError(f"trace {spec.arrival.trace} has {len(rows)} requests, num_requests={n}")
        rows = rows[:n]
        prompt_lens = np.array([r.prompt_tokens for r in rows], dtype=np.int64)
        output_lens = np.array([r.output_tokens for r in rows], dtype=np.int64)
        groups = _trace_groups(rows, spec.prefix.length)
        warm_rows = [rows[i % n] for i in range(spec.warmup)]
        warm_prompt = np.array([r.prompt_tokens for r in warm_rows], dtype=np.int64)
        warm_output = np.array([r.output_tokens for r in warm_rows], dtype=np.int64)
    else:
        prompt_lens = spec.prompt.sample(lengths_rng, n)
        output_lens = spec.output.sample(lengths_rng, n)
        groups = _draw_groups(spec.prefix, n, prefix_rng)
        warm_prompt = spec.prompt.sample(warmup_rng, spec.warmup)
        warm_output = spec.output.sample(warmup_rng, spec.warmup)
    prompts = _prompts(prompt_lens, groups, spec.prefix.length, allowed, tokens_rng)
    times = arrivals_mod.offsets(spec.arrival, n, arrival_rng)
    out = [RequestSpec(f"w{i:06d}", tuple(_draw(allowed, warmup_rng, int(warm_prompt[i]))), int(warm_output[i]),
                       None, None, True) for i in range(spec.warmup)]
    for i in range(n):
        out.append(RequestSpec(f"r{i:06d}", prompts[i], int(output_lens[i]),
                               None if times is None else float(times[i]),
                               None if groups[i] < 0 else int(groups[i]), False))
    return out


def _draw(allowed: np.ndarray, rng: np.random.Generator, k: int) -> list[int]:
    return allowed[rng.integers(0, allowed.size, size=k)].tolist()


def _draw_groups(prefix: PrefixSharing, n: int, rng: np.random.Generator) -> np.ndarray:
    """Group of each request, -1 for none: ``round(fraction * n)`` random requests in groups."""
    groups = np.full(n, -1, dtype=np.int64)
    grouped = int(round(prefix.fraction * n))
    if grouped:
        members = rng.choice(n, size=grouped, replace=False)
        groups[members] = rng.integers(0, prefix.groups, size=grouped)
    return groups


def _trace_groups(rows, k: int) -> np.ndarray:
    groups = np.array([-1 if r.prefix_group is None else r.prefix_group for r in rows], dtype=np.int64)
    if (groups >= 0).any() and k < 1:
        raise WorkloadError("the trace has prefix groups: set prefix=PrefixSharing(length=K) with K >= 1")
    for i, r in enumerate(rows):
        if r.prefix_group is not None and r.prompt_tokens <= k:
            raise WorkloadError(f"trace request {i} (prefix group {r.prefix_group}) has {r.prompt_tokens} prompt "
                                f"tokens, not more than the prefix length {k}")
    return groups


def _prompts(lengths: np.ndarray, groups: np.ndarray, k: int, allowed: np.ndarray,
             rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Random token prompts; members of a group get the group's K-token prefix, then a token
    that no other member of the group has at position K, then random tokens."""
    prompts = [allowed[rng.integers(0, allowed.size, size=int(length))] for length in lengths]
    for g in np.unique(groups[groups >= 0]):
        members = np.flatnonzero(groups == g)
        if members.size > allowed.size:
            raise WorkloadError(f"prefix group {g} has {members.size} members, more than the {allowed.size} "
                                "token ids that can tell them apart")
        prefix = allowed[rng.integers(0, allowed.size, size=k)]
        divergent = allowed[rng.choice(allowed.size, size=members.size, replace=False)]
        for m, first in zip(members, divergent):
            prompts[m][:k] = prefix
            prompts[m][k] = first
    return [tuple(p.tolist()) for p in prompts]


__all__ = ["ENDPOINTS", "Lengths", "PrefixSharing", "RequestSpec", "SLO", "WorkloadError", "WorkloadSpec",
           "build_requests", "fixed", "lognormal", "sweep", "uniform"]
