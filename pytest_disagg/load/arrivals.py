"""When requests are sent: arrival processes as data, turned into send offsets by a seeded generator.

Why a value object plus one pure function: the schedule is part of the workload's identity (it
is hashed with it), it must be reproducible from the seed alone, and the runner must be able to
read the whole schedule before the run starts so that drawing random numbers never competes with
sending requests. Offsets are seconds from the start of the measured phase; the first request
goes at 0. Unlike ``vllm bench serve`` the drawn intervals are not rescaled to make the run last
exactly N/rate: that rescaling changes the process (a Poisson run would no longer be Poisson).

Kinds:
  ``poisson``      exponential inter-arrival times at ``rate`` req/s
  ``gamma``        gamma inter-arrival times at ``rate`` with coefficient of variation ``cv``
                   (cv > 1 bursty, cv < 1 smoother, cv = 1 Poisson)
  ``constant``     one request every 1/``rate`` s
  any of those with ``rate=inf``: everything at once
  ``concurrency``  closed loop: ``concurrency`` requests in flight, the next sent when one ends;
                   ``ramp_s`` spreads the first N sends evenly (no synchronised token ticks)
  ``trace``        the times (and lengths, prefix groups) of a JSONL trace, sped up by ``scale``
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..shipped import FIXTURES_DIR

KINDS = ("poisson", "gamma", "constant", "concurrency", "trace")
TRACES_DIR = FIXTURES_DIR / "traces"


class ArrivalError(ValueError):
    """An arrival process that cannot be built (bad rate, missing trace, bad trace row...)."""


@dataclass(frozen=True)
class Arrival:
    kind: str = "poisson"
    rate: float | None = None          # req/s; math.inf: all at once
    cv: float | None = None            # gamma only
    concurrency: int | None = None     # closed loop only
    ramp_s: float = 0.0                # closed loop only
    trace: str | None = None           # trace only: a path, or a file name under fixtures/traces
    scale: float = 1.0                 # trace only: 2.0 replays twice as fast

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ArrivalError(f"arrival kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("poisson", "gamma", "constant"):
            if self.rate is None or not (self.rate > 0):
                raise ArrivalError(f"{self.kind} arrivals need rate > 0 (req/s, inf for all at once), got {self.rate}")
        elif self.rate is not None:
            raise ArrivalError(f"{self.kind} arrivals take no rate")
        if self.kind == "gamma":
            if self.cv is None or not (0 < self.cv < math.inf):
                raise ArrivalError(f"gamma arrivals need 0 < cv < inf, got {self.cv}")
        elif self.cv is not None:
            raise ArrivalError(f"only gamma arrivals take cv (got cv={self.cv} for {self.kind})")
        if self.kind == "concurrency":
            if not isinstance(self.concurrency, int) or self.concurrency < 1:
                raise ArrivalError(f"closed-loop arrivals need an integer concurrency >= 1, got {self.concurrency}")
            if not (0 <= self.ramp_s < math.inf):
                raise ArrivalError(f"ramp_s must be finite and >= 0, got {self.ramp_s}")
        elif self.concurrency is not None or self.ramp_s:
            raise ArrivalError("only closed-loop arrivals take concurrency/ramp_s")
        if self.kind == "trace":
            if not self.trace:
                raise ArrivalError("trace arrivals need trace=<path or name under fixtures/traces>")
            if not (0 < self.scale < math.inf):
                raise ArrivalError(f"trace scale must be finite and > 0, got {self.scale}")
        elif self.trace is not None or self.scale != 1.0:
            raise ArrivalError("only trace arrivals take trace/scale")

    @property
    def closed_loop(self) -> bool:
        return self.kind == "concurrency"

    def to_json(self) -> dict:
        """Only the fields this kind uses; inf as the string "inf" (strict JSON has no inf)."""
        out: dict = {"kind": self.kind}
        if self.rate is not None:
            out["rate"] = "inf" if math.isinf(self.rate) else self.rate
        if self.cv is not None:
            out["cv"] = self.cv
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
            out["ramp_s"] = self.ramp_s
        if self.trace is not None:
            out["trace"] = self.trace
            out["scale"] = self.scale
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Arrival":
        data = dict(data)
        if data.get("rate") == "inf":
            data["rate"] = math.inf
        try:
            return cls(**data)
        except TypeError as exc:
            raise ArrivalError(f"bad arrival {data!r}: {exc}") from None

    def describe(self) -> str:
        if self.kind == "concurrency":
            return f"concurrency={self.concurrency}"
        if self.kind == "trace":
            return f"trace={Path(self.trace).name}" + (f"x{self.scale:g}" if self.scale != 1 else "")
        rate = "inf" if math.isinf(self.rate) else f"{self.rate:g}"
        return f"{self.kind}@{rate}/s" + (f",cv={self.cv:g}" if self.cv is not None else "")


def poisson(rate: float) -> Arrival:
    return Arrival("poisson", rate=rate)


def gamma(rate: float, cv: float) -> Arrival:
    return Arrival("gamma", rate=rate, cv=cv)


def constant(rate: float) -> Arrival:
    return Arrival("constant", rate=rate)


def all_at_once() -> Arrival:
    return Arrival("constant", rate=math.inf)


def concurrency(n: int, ramp_s: float = 0.0) -> Arrival:
    return Arrival("concurrency", concurrency=n, ramp_s=ramp_s)


def trace(path: str, scale: float = 1.0) -> Arrival:
    return Arrival("trace", trace=path, scale=scale)


def offsets(arrival: Arrival, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Send offsets (seconds, non-decreasing, first 0) of ``n`` requests, or None for a closed loop.

    For ``concurrency`` with ``ramp_s`` the first N offsets are returned as start times for the
    loop's workers (the rest are None-like: the runner sends them as slots free up).
    """
    if n < 0:
        raise ArrivalError(f"request count must be >= 0, got {n}")
    if arrival.kind == "concurrency":
        return None
    if arrival.kind == "trace":
        rows = read_trace(arrival.trace)
        if n > len(rows):
            raise ArrivalError(f"trace {arrival.trace} has {len(rows)} requests, {n} asked for")
        times = np.array([r.arrival_s for r in rows[:n]], dtype=float)
        return (times - (times[0] if n else 0.0)) / arrival.scale
    if n == 0:
        return np.zeros(0)
    if math.isinf(arrival.rate):
        return np.zeros(n)
    mean = 1.0 / arrival.rate
    if arrival.kind == "poisson":
        gaps = rng.exponential(mean, size=n - 1)
    elif arrival.kind == "gamma":
        shape = 1.0 / arrival.cv ** 2
        gaps = rng.gamma(shape, mean / shape, size=n - 1)
    else:
        gaps = np.full(n - 1, mean)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def ramp_offsets(arrival: Arrival) -> np.ndarray:
    """Start times of a closed loop's first ``concurrency`` requests (all 0 without a ramp)."""
    if arrival.kind != "concurrency":
        raise ArrivalError("ramp offsets are for closed-loop arrivals only")
    return np.arange(arrival.concurrency) * (arrival.ramp_s / arrival.concurrency)


# --- traces ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceRow:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prefix_group: int | None


def resolve_trace(path: str) -> Path:
    """A path as given if it exists, else a file of that name under ``fixtures/traces``."""
    p = Path(path)
    if p.is_file():
        return p
    candidate = TRACES_DIR / path
    if candidate.is_file():
        return candidate
    known = sorted(x.name for x in TRACES_DIR.glob("*.jsonl")) if TRACES_DIR.is_dir() else []
    raise ArrivalError(f"trace {path!r} not found (nor under {TRACES_DIR}; known: {known})")


def read_trace(path: str) -> list[TraceRow]:
    """Rows of a JSONL trace: arrival_s (non-decreasing, >= 0), prompt_tokens >= 1,
    output_tokens >= 1, prefix_group (int or null). Errors name the file and line."""
    file = resolve_trace(path)
    rows: list[TraceRow] = []
    previous = 0.0
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{file}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArrivalError(f"{where}: not JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise ArrivalError(f"{where}: expected an object, got {type(raw).__name__}")
            missing = {"arrival_s", "prompt_tokens", "output_tokens"} - raw.keys()
            if missing:
                raise ArrivalError(f"{where}: missing field(s) {sorted(missing)}")
            t, p, o, g = raw["arrival_s"], raw["prompt_tokens"], raw["output_tokens"], raw.get("prefix_group")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
                raise ArrivalError(f"{where}: arrival_s must be a finite number >= 0, got {t!r}")
            if t < previous:
                raise ArrivalError(f"{where}: arrival_s {t} goes back in time (previous {previous})")
            for name, v in (("prompt_tokens", p), ("output_tokens", o)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ArrivalError(f"{where}: {name} must be an integer >= 1, got {v!r}")
            if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 0):
                raise ArrivalError(f"{where}: prefix_group must be null or an integer >= 0, got {g!r}")
            previous = t
            rows.append(TraceRow(float(t), p, o, g))
    if not rows:
        raise ArrivalError(f"{file}: trace is empty")
    return rows


__all__ = ["Arrival", "ArrivalError", "KINDS", "TRACES_DIR", "TraceRow", "all_at_once", "concurrency", "constant",
           "gamma", "offsets", "poisson", "ramp_offsets", "read_trace", "resolve_trace", "trace"]
