"""A results file's runs as the report sees them: who ran (set-up), under what load, with what figures.

Why a view: the run entries are written by several benchmarks, and the report must read the
same facts (rate or batch, clocks, J/token, a statistic with its CI) from each without caring
which benchmark wrote it. Everything optional is looked up in one place here, with the names
the writers use (see ``results.py``, ``energy/attribution.py``, ``energy/grid.py``), so that the
plots and tables never dig into raw dicts themselves.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..metrics import describe
from ..metrics import MetricError

STATS = ("p50", "p90", "p99", "mean")
RATE_KINDS = ("poisson", "gamma", "constant")
_BATCH = re.compile(r"\bbatch\s*=\s*(\d+)")
_RATE = re.compile(r"(?:\brate\s*=\s*|@)\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)", re.IGNORECASE)

# Where the stage clocks of a dvfs run may sit in its ``extra`` (DvfsPoint.to_json() names first).
_PREFILL_CLOCK_KEYS = ("prefill_sm_mhz", "prefill_mhz", "prefill_clock_mhz")
_DECODE_CLOCK_KEYS = ("decode_sm_mhz", "decode_mhz", "decode_clock_mhz")
_BOTH_CLOCK_KEYS = ("sm_mhz", "clock_mhz", "clocks_mhz")
_CLOCK_NESTS = ("dvfs", "clocks", "point", "dvfs_point")


@dataclass(frozen=True)
class Estimate:
    """A figure and, where known, its confidence interval."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, digits: int = 3) -> str:
        main = fmt_number(self.value, digits)
        if not self.has_ci:
            return main
        return f"{main} [{fmt_number(self.low, digits)}, {fmt_number(self.high, digits)}]"


def fmt_number(x: float | None, digits: int = 3) -> str:
    """Short, readable: 3 significant digits, but no scientific notation for ordinary sizes."""
    if x is None:
        return "-"
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits - 1 and abs(x) < 1e7:
        return f"{x:,.0f}"
    if -4 <= magnitude:
        return f"{x:.{max(0, digits - 1 - magnitude)}f}"
    return f"{x:.{digits - 1}e}"


@dataclass(frozen=True)
class Clocks:
    """The stage clocks a dvfs run asked for, and whether they were really set."""

    prefill_mhz: float | None
    decode_mhz: float | None
    dry_run: bool | None            # None: the run did not say

    def label(self) -> str:
        if self.prefill_mhz == self.decode_mhz:
            return f"{_ghz(self.prefill_mhz)} GHz"
        return f"P {_ghz(self.prefill_mhz)} / D {_ghz(self.decode_mhz)} GHz"


def _ghz(mhz: float | None) -> str:
    return "?" if mhz is None else f"{mhz / 1000:.2f}"


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def clocks_of(extra: Mapping[str, Any] | None) -> Clocks | None:
    """Stage clocks from a run's ``extra`` (flat, or under ``dvfs``/``clocks``/``point``)."""
    if not isinstance(extra, Mapping):
        return None
    scopes = [extra] + [extra[k] for k in _CLOCK_NESTS if isinstance(extra.get(k), Mapping)]

    def first(keys: Sequence[str]) -> float | None:
        for scope in scopes:
            for key in keys:
                if _number(scope.get(key)) is not None:
                    return _number(scope[key])
        return None

    prefill, decode, both = first(_PREFILL_CLOCK_KEYS), first(_DECODE_CLOCK_KEYS), first(_BOTH_CLOCK_KEYS)
    if prefill is None and decode is None and both is None:
        return None
    prefill = prefill if prefill is not None else both
    decode = decode if decode is not None else both
    dry = None
    for scope in scopes:
        if isinstance(scope.get("dry_run"), bool):
            dry = scope["dry_run"]
            break
        mode = scope.get("dvfs_mode", scope.get("mode"))
        if isinstance(mode, str) and mode in ("dry-run", "apply", "off"):
            dry = mode != "apply"
            break
        if isinstance(scope.get("applied"), bool):
            dry = not scope["applied"]
            break
    return Clocks(prefill, decode, dry)


@dataclass(frozen=True)
class RunView:
    """One run entry of a results file, read."""

    index: int
    raw: Mapping[str, Any]
    benchmark: str
    setup: str                      # the set-up's name (the preset's label, or the medium)
    medium: str
    colocated: bool
    prefix_caching: bool | None
    load: str
    rate: float | None              # finite request rate (req/s) of rate-based arrivals
    batch: int | None               # requests sent at once (rate inf)
    clocks: Clocks | None

    @property
    def sweep_kind(self) -> str:
        if self.clocks is not None:
            return "dvfs"
        if self.batch is not None:
            return "batch"
        if self.rate is not None:
            return "rate"
        return "other"

    @property
    def arrival_kind(self) -> str | None:
        workload = self.raw.get("workload")
        arrival = workload.get("arrival") if isinstance(workload, Mapping) else None
        return str(arrival.get("kind")) if isinstance(arrival, Mapping) and arrival.get("kind") else None

    def stat(self, metric: str, stat: str = "p50") -> Estimate | None:
        """A per-request metric's statistic with its bootstrap CI, from the run's summary."""
        summary = (self.raw.get("summary") or {}).get(metric)
        if not isinstance(summary, Mapping) or _number(summary.get(stat)) is None:
            return None
        ci = (summary.get("ci") or {}).get(stat) if isinstance(summary.get("ci"), Mapping) else None
        lo, hi = (_number(ci[0]), _number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
        return Estimate(_number(summary[stat]), lo, hi)

    def scalar(self, name: str) -> float | None:
        return _number((self.raw.get("scalars") or {}).get(name))

    def figure(self, metric: str, stat: str = "p50") -> Estimate | None:
        """A statistic of a per-request metric, or a run scalar (``output_throughput``...)."""
        if metric in ("energy_j_per_token", "j_per_token"):
            return self.energy_per_token()
        if metric in ("energy_j_per_request", "j_per_request"):
            return self.energy_per_request()
        if metric == "prompt_throughput":
            value = self.prompt_throughput()
            return None if value is None else Estimate(value)
        est = self.stat(metric, stat)
        if est is not None:
            return est
        value = self.scalar(metric)
        return None if value is None else Estimate(value)

    def samples(self, name: str) -> list[float] | None:
        """The run's per-request samples of a metric (``samples.NAME``), None where not kept."""
        values = (self.raw.get("samples") or {}).get(name) if isinstance(self.raw.get("samples"), Mapping) else None
        if not isinstance(values, list) or not all(_number(v) is not None for v in values):
            return None
        return [float(v) for v in values]

    def server_figure(self, name: str) -> float | None:
        """A key figure of the servers' ``/metrics`` deltas (``kv_bytes``, ``prefix_cache_hits``...),
        summed over the deployment's servers; None where no server reported it."""
        servers = self.raw.get("server_metrics")
        values = [_number((s.get("key") or {}).get(name)) for s in (servers or {}).values()
                  if isinstance(s, Mapping) and isinstance(s.get("key"), Mapping)] if isinstance(servers, Mapping) else []
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    def prefix_hit_rate(self) -> float | None:
        hits, queries = self.server_figure("prefix_cache_hits"), self.server_figure("prefix_cache_queries")
        return hits / queries if hits is not None and queries else None

    @property
    def energy(self) -> Mapping[str, Any]:
        e = self.raw.get("energy")
        return e if isinstance(e, Mapping) else {}

    def _energy_estimate(self, names: Sequence[str], scalar: str) -> Estimate | None:
        value = next((_number(self.energy.get(n)) for n in names if _number(self.energy.get(n)) is not None), None)
        if value is None:
            value = self.scalar(scalar)
        if value is None:
            return None
        for key in [f"{n}_ci" for n in names] + [f"{scalar}_ci"]:
            ci = self.energy.get(key, (self.raw.get("scalars") or {}).get(key))
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in map(_number, ci):
                return Estimate(value, float(ci[0]), float(ci[1]))
        return Estimate(value)

    def energy_per_token(self) -> Estimate | None:
        """Joules per (prompt + output) token, all measured components (the study's figure)."""
        return self._energy_estimate(("joules_per_token", "j_per_token"), "energy_j_per_token")

    def energy_per_request(self) -> Estimate | None:
        return self._energy_estimate(("joules_per_request", "j_per_request"), "energy_j_per_request")

    def energy_unavailable(self) -> str | None:
        """Why a run has no energy figure, when its entry says."""
        for key in ("unavailable", "reason", "skipped", "error"):
            if isinstance(self.energy.get(key), str):
                return self.energy[key]
        return None

    def prompt_throughput(self) -> float | None:
        """Prompt tokens per second (the study's prefill throughput): the scalar when recorded,
        else total minus output token throughput."""
        value = self.scalar("prompt_throughput")
        if value is not None:
            return value
        total, out = self.scalar("total_token_throughput"), self.scalar("output_throughput")
        return None if total is None or out is None else total - out

    @property
    def n_ok(self) -> int | None:
        n = self.raw.get("n_ok")
        return n if isinstance(n, int) else None

    @property
    def n_failed(self) -> int | None:
        n = self.raw.get("n_failed")
        return n if isinstance(n, int) else None


def _rate_and_batch(run: Mapping[str, Any]) -> tuple[float | None, int | None]:
    load = str(run.get("load") or "")
    arrival = ((run.get("workload") or {}).get("arrival") or {}) if isinstance(run.get("workload"), Mapping) else {}
    batch_match = _BATCH.search(load)
    if isinstance(arrival, Mapping) and arrival.get("kind") in RATE_KINDS:
        rate = arrival.get("rate")
        if rate == "inf" or (isinstance(rate, float) and math.isinf(rate)):
            n = (run.get("workload") or {}).get("num_requests")
            batch = int(batch_match.group(1)) if batch_match else (n if isinstance(n, int) else None)
            return None, batch
        return _number(rate), None
    if isinstance(arrival, Mapping) and arrival.get("kind"):
        return None, None   # closed loop, trace: neither a rate nor a batch
    if batch_match:
        return None, int(batch_match.group(1))
    rate_match = _RATE.search(load)
    return (float(rate_match.group(1)), None) if rate_match else (None, None)


def is_colocated(run: Mapping[str, Any], deployments: Mapping[str, Any]) -> bool:
    """Colocated serving: the medium does no hand-off (``colocated``, ``colocated-dp``...)."""
    dep = deployments.get(run.get("deployment")) if isinstance(deployments, Mapping) else None
    medium = dep.get("medium") if isinstance(dep, Mapping) else None
    if isinstance(medium, Mapping) and "handoff" in medium:
        return medium["handoff"] == "none"
    return str(run.get("medium") or "").startswith("colocated")


def run_views(doc: Mapping[str, Any]) -> list[RunView]:
    """Every run of a results document, read (legend labels come from ``style.series_labels``)."""
    deployments = doc.get("deployments") or {}
    out = []
    for i, run in enumerate(doc.get("runs") or []):
        pc = run.get("prefix_caching")
        rate, batch = _rate_and_batch(run)
        out.append(RunView(index=i, raw=run, benchmark=run["benchmark"], setup=run["setup"],
                           medium=str(run.get("medium") or run["setup"]), colocated=is_colocated(run, deployments),
                           prefix_caching=pc if isinstance(pc, bool) else None, load=str(run.get("load") or ""),
                           rate=rate, batch=batch, clocks=clocks_of(run.get("extra"))))
    return out


def setups_in_order(runs: Iterable[RunView]) -> list[str]:
    """Colocated set-ups first, then the others, each group by name: the same order everywhere."""
    seen: dict[str, bool] = {}
    for r in runs:
        seen.setdefault(r.setup, r.colocated)
    return sorted(seen, key=lambda s: (not seen[s], s))


def metric_label(metric: str, stat: str | None = None) -> str:
    """Axis text with the unit: "TTFT p50 (ms)"."""
    names = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2el_ms": "E2E latency", "itl_ms": "ITL",
             "output_throughput": "decode (output) throughput", "prompt_throughput": "prefill (prompt) throughput",
             "total_token_throughput": "total token throughput", "request_throughput": "request throughput",
             "energy_j_per_token": "energy per token", "energy_j_per_request": "energy per request"}
    try:
        unit = describe(metric).unit
    except MetricError:
        unit = "tok/s" if metric.endswith("throughput") else ""
    text = names.get(metric, metric)
    if stat and describe_kind(metric) in ("request", "token"):
        text += f" {stat}"
    return f"{text} ({unit})" if unit and unit != "1" else text


def describe_kind(metric: str) -> str:
    try:
        return describe(metric).kind
    except MetricError:
        return "run"


__all__ = ["Clocks", "Estimate", "RunView", "STATS", "clocks_of", "fmt_number", "is_colocated", "metric_label",
           "run_views", "setups_in_order"]
