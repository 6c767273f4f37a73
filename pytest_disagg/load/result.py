"""The result of one workload run: request records plus server-metric deltas, as data.

Why a plain object with ``samples()``/``scalars()``/``to_json()``: the gate, the report and the
energy attribution consume runs without knowing the client (ARCHITECTURE.md, RunResult
contract). Warm-up requests are kept in ``records`` (so failures there are visible) but never
enter a figure. ``energy`` is filled by callers that measured it (``{"scalars": {...}, ...}``);
its scalars join ``scalars()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import metrics
from .client import RequestRecord
from .workload import WorkloadSpec

PROXY_SAMPLES = (("prefill_ms", ("prefill_ms",)), ("handoff_ms", ("handoff_ms",)),
                 ("decode_ttft_ms", ("decode_ttft_ms", "decode_first_byte_ms")))
DEFAULT_MAX_FAILURE_FRACTION = 0.01


class TooManyFailures(AssertionError):
    """More requests failed than a run may lose; the message shows the first failures."""


@dataclass
class RunResult:
    workload: WorkloadSpec
    records: list[RequestRecord]
    t0_ns: int                                  # start of the measured phase (perf_counter_ns)
    wall_s: float                               # measured phase: first send to last answer
    server_metrics_delta: dict[str, dict] = field(default_factory=dict)
    proxy_records: bool = False                 # whether the proxy's stage records were joined
    truncated: str | None = None                # why the run stopped early, if it did
    energy: dict | None = None
    target: dict = field(default_factory=dict)
    loop_lag_ms: list[float] = field(default_factory=list)   # the runner's event-loop lag probe (ms late)
    _summary: dict | None = field(default=None, repr=False, compare=False)

    # --- which records count --------------------------------------------------------------
    @property
    def measured(self) -> list[RequestRecord]:
        return [r for r in self.records if not r.warmup]

    @property
    def n_ok(self) -> int:
        return sum(1 for r in self.measured if r.ok)

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.measured if r.status == "failed")

    @property
    def n_unfinished(self) -> int:
        """Requests cut off or never sent because the wall-time limit came first."""
        return sum(1 for r in self.measured if r.status in ("cancelled", "not_sent"))

    @property
    def failure_fraction(self) -> float:
        tried = self.n_ok + self.n_failed
        return self.n_failed / tried if tried else 0.0

    def failures(self, include_warmup: bool = False) -> list[RequestRecord]:
        return [r for r in self.records if r.status == "failed" and (include_warmup or not r.warmup)]

    def first_failures(self, n: int = 5) -> list[dict]:
        """The first ``n`` failed measured requests, in send order, as short dicts."""
        failed = sorted(self.failures(), key=lambda r: r.send_ns)
        return [{"request_id": r.request_id, "stage": r.stage, "error": r.error, "http_status": r.http_status,
                 "proxy_stage": (r.proxy or {}).get("stage_failed")} for r in failed[:n]]

    def failure_counts(self) -> dict[str, int]:
        """Failed measured requests by stage."""
        counts: dict[str, int] = {}
        for r in self.failures():
            counts[r.stage or "?"] = counts.get(r.stage or "?", 0) + 1
        return counts

    # --- figures --------------------------------------------------------------------------
    def samples(self) -> dict[str, list[float]]:
        """Per-request samples of the measured, successful requests (ms). Proxy stage times
        appear only when the proxy's records were joined."""
        ok = [r for r in self.measured if r.ok]
        out: dict[str, list[float]] = {
            "ttft_ms": [r.ttft_ms for r in ok],
            "tpot_ms": [r.tpot_ms for r in ok if r.tpot_ms is not None],
            "itl_ms": [gap for r in ok for gap in r.itl_ms],
            "e2el_ms": [r.e2el_ms for r in ok],
        }
        for name, keys in PROXY_SAMPLES:
            values = [v for r in ok if r.proxy for v in [_first(r.proxy, keys)] if v is not None]
            if values:
                out[name] = values
        return {k: v for k, v in out.items() if v}

    def scalars(self) -> dict[str, float]:
        out = metrics.run_scalars(self.measured, self.wall_s, self.workload.slo) if self.wall_s > 0 else {}
        if self.energy and isinstance(self.energy.get("scalars"), dict):
            out.update({k: float(v) for k, v in self.energy["scalars"].items() if v is not None})
        return out

    def summary(self) -> dict[str, dict]:
        """:func:`metrics.summarize` of every sample (computed once; bootstrap is not free)."""
        if self._summary is None:
            self._summary = metrics.summarize_all(self.samples(), seed=self.workload.seed)
        return self._summary

    def stages(self) -> dict[str, Any]:
        """Where requests failed: by client stage, and by proxy stage where the proxy said."""
        proxy: dict[str, int] = {}
        for r in self.measured:
            stage = (r.proxy or {}).get("stage_failed")
            if stage:
                proxy[stage] = proxy.get(stage, 0) + 1
        return {"client_failures": self.failure_counts(), "proxy_failures": proxy, "proxy_joined": self.proxy_records}

    def check_failures(self, max_fraction: float = DEFAULT_MAX_FAILURE_FRACTION, show: int = 5) -> None:
        """Raise :class:`TooManyFailures` when more than ``max_fraction`` of the requests failed."""
        message = self.failure_message(max_fraction, show)
        if message:
            raise TooManyFailures(message)

    def failure_message(self, max_fraction: float = DEFAULT_MAX_FAILURE_FRACTION, show: int = 5) -> str | None:
        """The text of a failing check, or None when the run is within ``max_fraction``."""
        tried = self.n_ok + self.n_failed
        if tried and self.failure_fraction <= max_fraction:
            return None
        if not tried:
            return f"{self.workload.describe()}: no request completed ({self.truncated or 'nothing to send'})"
        lines = [f"{self.workload.describe()} against {self.target.get('url', '?')}: {self.n_failed} of {tried} "
                 f"requests failed ({self.failure_fraction:.1%} > {max_fraction:.1%}); by stage: "
                 f"{self.failure_counts()}", f"first {min(show, self.n_failed)} failures:"]
        for f in self.first_failures(show):
            extra = f" (proxy stage {f['proxy_stage']})" if f["proxy_stage"] else ""
            lines.append(f"  {f['request_id']} [{f['stage']}]{extra}: {f['error']}")
        return "\n".join(lines)

    def client_figures(self) -> dict:
        """How punctual the client was: send lateness against the schedule and event-loop lag (ms)."""
        out: dict[str, float | int] = {}
        send = [r.send_lag_ms for r in self.measured if r.send_lag_ms is not None]
        for name, values in (("send_lag_ms", send), ("loop_lag_ms", self.loop_lag_ms)):
            if values:
                a = np.asarray(values, dtype=float)
                out.update({f"{name}_p50": float(np.median(a)), f"{name}_p95": float(np.quantile(a, 0.95)),
                            f"{name}_max": float(a.max())})
        out["loop_lag_samples"] = len(self.loop_lag_ms)
        return out

    # --- JSON -----------------------------------------------------------------------------
    def to_json(self, records: bool = True) -> dict:
        data = {
            "workload": self.workload.to_json(), "workload_hash": self.workload.spec_hash(),
            "target": self.target, "wall_s": self.wall_s, "truncated": self.truncated,
            "n_ok": self.n_ok, "n_failed": self.n_failed, "n_unfinished": self.n_unfinished,
            "n_warmup": len(self.records) - len(self.measured), "first_failures": self.first_failures(),
            "summary": self.summary(), "scalars": self.scalars(), "stages": self.stages(),
            "server_metrics": self.server_metrics_delta, "proxy_records": self.proxy_records, "energy": self.energy,
            "t0_ns": self.t0_ns, "client": self.client_figures(),
        }
        if records:
            data["records"] = [r.to_json(self.t0_ns) for r in self.records]
            data["loop_lag_ms"] = self.loop_lag_ms
        return data

    @classmethod
    def from_json(cls, data: dict) -> "RunResult":
        """Inverse of :meth:`to_json` (with records); times come back relative to the run start."""
        if "records" not in data:
            raise ValueError("this run JSON was written without its records; samples cannot be rebuilt")
        return cls(workload=WorkloadSpec.from_json(data["workload"]),
                   records=[RequestRecord.from_json(r) for r in data["records"]], t0_ns=0,
                   wall_s=float(data["wall_s"]), server_metrics_delta=data.get("server_metrics") or {},
                   proxy_records=bool(data.get("proxy_records")), truncated=data.get("truncated"),
                   energy=data.get("energy"), target=data.get("target") or {},
                   loop_lag_ms=list(data.get("loop_lag_ms") or []))


def _first(d: dict, keys: tuple[str, ...]):
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


__all__ = ["DEFAULT_MAX_FAILURE_FRACTION", "RunResult", "TooManyFailures"]
