"""Whether a run measured the deployment or the machine it ran on.

A figure is only worth gating when the deployment under test is what limited it. On a busy box
(2 cores shared by two engines, the proxy and the client) three things make a run measure the
machine instead, and each has a named reason:

- ``token-bursts``: tokens reached the client in bursts — most inter-token gaps are ~0 and TTFT
  is most of E2E — so TPOT and ITL say how long the client (or proxy) was not reading, not how
  fast the engine decoded;
- ``client-lag``: the client itself was descheduled: it sent requests late against the arrival
  schedule, or its event loop woke up late (measured by the runner's lag probe), so every
  timestamp it took carries that lag;
- ``saturated``: the deployment could not keep up with the offered rate — it completed far fewer
  requests per second than were offered, or the queue grew through the run and stayed grown
  (latency of the third quarter, the last quarter and the last requests all far above the first
  quarter's) — so the figures depend on how long the run was, not on the deployment alone.

Thresholds were calibrated on real runs of this suite on the 2-core CPU box
(docs/measurements/2026-12-02-validity-first-run.md); they are named constants so a user can see them and the tests can probe them.
:func:`assess` returns ``{"valid": bool, "invalid_reasons": [...], "figures": {...}}``; the
figures are the raw quantities the rules looked at, kept in the results JSON so that a threshold
can be re-judged later from the data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# token-bursts: a gap below BURST_GAP_MS is "no gap"; a run is bursty when more than
# BURST_FRACTION of its inter-token gaps are, or when more than BURST_FRACTION of the requests
# that stream several tokens got them all in one burst (TPOT below BURST_GAP_MS: TTFT = E2E).
BURST_GAP_MS = 0.05
BURST_FRACTION = 0.5
# client-lag: the 95th percentile of send lateness or event-loop lag above this many ms, and
# above LAG_SHARE of the median TTFT (a 20 ms lag is noise against a 2 s TTFT, not against 5 ms).
LAG_MS = 20.0
LAG_SHARE = 0.10
# saturated: completed req/s below SATURATED_RATIO of the offered rate, or the median TTFT of the
# third quarter, the last quarter and the last eighth all above QUEUE_GROWTH × the first
# quarter's (and by more than QUEUE_MIN_MS): see ``queue_growth``.
SATURATED_RATIO = 0.75
QUEUE_GROWTH = 3.0
QUEUE_MIN_MS = 50.0
MIN_REQUESTS = 8            # fewer measured requests: the rules that need a distribution abstain

REASONS = {
    "token-bursts": "tokens arrived in bursts (inter-token gaps ~0, TTFT ≈ E2E): TPOT/ITL measure the client's reads",
    "client-lag": "the client was descheduled (late sends or a late event loop): its timestamps carry that lag",
    "saturated": "the deployment did not keep up with the offered rate (queue growing / completions below offered)",
}


@dataclass(frozen=True)
class Assessment:
    valid: bool
    reasons: tuple[str, ...]
    details: tuple[str, ...]
    figures: dict

    def to_json(self) -> dict:
        return {"valid": self.valid, "invalid_reasons": list(self.reasons), "invalid_details": list(self.details),
                "validity_figures": self.figures}


def _p(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values, dtype=float), q)) if len(values) else None


def _bursts(records, figures: dict, details: list) -> bool:
    gaps = [g for r in records for g in r.itl_ms]
    multi = [r for r in records if len(r.chunk_ns) >= 3 and r.tpot_ms is not None]
    if len(multi) < MIN_REQUESTS:
        return False
    zero = float(np.mean(np.asarray(gaps) < BURST_GAP_MS))
    one_burst = float(np.mean([r.tpot_ms < BURST_GAP_MS for r in multi]))
    figures.update(zero_gap_fraction=zero, one_burst_fraction=one_burst)
    if zero > BURST_FRACTION or one_burst > BURST_FRACTION:
        details.append(f"token-bursts: {zero:.0%} of inter-token gaps < {BURST_GAP_MS:g} ms; {one_burst:.0%} of "
                       f"requests got all their tokens in one burst (TPOT ≈ 0, TTFT ≈ E2E; limit {BURST_FRACTION:.0%})")
        return True
    return False


def _lag(records, loop_lag_ms: Sequence[float], figures: dict, details: list) -> bool:
    send = [r.send_lag_ms for r in records if r.send_lag_ms is not None]
    ttft = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None]
    send95, loop95 = _p(send, 0.95), _p(loop_lag_ms, 0.95)
    figures.update(send_lag_ms_p95=send95, send_lag_ms_max=max(send) if send else None,
                   loop_lag_ms_p95=loop95, loop_lag_ms_max=max(loop_lag_ms) if len(loop_lag_ms) else None)
    if len(ttft) < MIN_REQUESTS:
        return False
    limit = max(LAG_MS, LAG_SHARE * float(np.median(ttft)))
    worst = max(v for v in (send95, loop95, 0.0) if v is not None)
    if worst > limit:
        which = "send lateness" if send95 is not None and send95 >= (loop95 or 0.0) else "event-loop lag"
        details.append(f"client-lag: {which} p95 {worst:.1f} ms > {limit:.1f} ms "
                       f"(max of {LAG_MS:g} ms and {LAG_SHARE:.0%} of median TTFT)")
        return True
    return False


def queue_growth(ttft_ms: Sequence[float]) -> tuple[bool, dict]:
    """Whether the TTFTs (in send order) show a queue that the offered rate built: the third
    quarter, the last quarter and the last eighth of the requests all waited QUEUE_GROWTH × the
    first quarter's median TTFT (and QUEUE_MIN_MS more). A queue built by too high a rate stays
    built until the run ends. A host stall (the box busy elsewhere for a few hundred ms) lifts a
    cluster of requests wherever it lands and then drains; comparing only the first and last
    quarters called such a stall "saturated" when it happened to fall in the last quarter
    (colocated at 5.7, 11 and 18 req/s in docs/example-report, with vLLM's own queue time ~1 ms
    for the run and the same stall mid-run at 7.2, 9.9 and 13 req/s not flagged)."""
    n = len(ttft_ms)
    q, e = max(2, n // 4), max(2, n // 8)
    first = float(np.median(ttft_ms[:q]))
    later = {"ttft_third_quarter_ms": float(np.median(ttft_ms[n // 2:n // 2 + q])),
             "ttft_last_quarter_ms": float(np.median(ttft_ms[-q:])),
             "ttft_last_eighth_ms": float(np.median(ttft_ms[-e:]))}
    grew = all(v > QUEUE_GROWTH * first and v - first > QUEUE_MIN_MS for v in later.values())
    return grew, {"ttft_first_quarter_ms": first, **later}


def _saturated(records, offered_rps: float | None, wall_s: float, figures: dict, details: list) -> bool:
    ok = sorted((r for r in records if r.ok and r.ttft_ms is not None), key=lambda r: r.send_ns)
    if len(ok) < MIN_REQUESTS or offered_rps is None or not wall_s:
        return False
    scheduled = sorted(r.scheduled_ns for r in records if r.scheduled_ns is not None)
    if len(scheduled) >= MIN_REQUESTS and scheduled[-1] > scheduled[0]:
        # The rate this draw of the schedule offered (a 40-request Poisson draw strays ±15 % from its mean).
        offered_rps = (len(scheduled) - 1) / ((scheduled[-1] - scheduled[0]) / 1e9)
    ends = sorted(r.end_ns for r in ok if r.end_ns)
    achieved = ((len(ends) - 1) / ((ends[-1] - ends[0]) / 1e9) if len(ends) >= 2 and ends[-1] > ends[0]
                else len(ok) / wall_s)
    grew, queue = queue_growth([r.ttft_ms for r in ok])
    figures.update(offered_rps=offered_rps, achieved_rps=achieved, achieved_ratio=achieved / offered_rps, **queue)
    out = False
    if achieved < SATURATED_RATIO * offered_rps:
        details.append(f"saturated: completed {achieved:.2f} req/s of {offered_rps:.2f} offered "
                       f"({achieved / offered_rps:.0%} < {SATURATED_RATIO:.0%})")
        out = True
    if grew:
        details.append(f"saturated: queue growing, median TTFT {queue['ttft_first_quarter_ms']:.0f} ms in the first "
                       f"quarter, {queue['ttft_third_quarter_ms']:.0f} ms in the third, "
                       f"{queue['ttft_last_quarter_ms']:.0f} ms in the last (> {QUEUE_GROWTH:g}× through the end)")
        out = True
    return out


def offered_rate(workload) -> float | None:
    """Requests per second the schedule offered (open-loop arrivals with a finite rate), else None."""
    arrival = getattr(workload, "arrival", None)
    if arrival is None or getattr(arrival, "closed_loop", False):
        return None
    rate = getattr(arrival, "rate", None)
    return float(rate) if isinstance(rate, (int, float)) and 0 < rate < float("inf") else None


def assess(run, *, loop_lag_ms: Iterable[float] | None = None) -> Assessment:
    """Judge one :class:`~pytest_disagg.load.RunResult` (its measured requests only)."""
    records = [r for r in run.measured if r.ok]
    lag = list(loop_lag_ms if loop_lag_ms is not None else getattr(run, "loop_lag_ms", None) or [])
    figures: dict = {}
    details: list[str] = []
    reasons = []
    if _bursts(records, figures, details):
        reasons.append("token-bursts")
    if _lag(records, lag, figures, details):
        reasons.append("client-lag")
    if _saturated(records, offered_rate(run.workload), run.wall_s, figures, details):
        reasons.append("saturated")
    return Assessment(valid=not reasons, reasons=tuple(reasons), details=tuple(details), figures=figures)


__all__ = ["Assessment", "REASONS", "assess", "offered_rate", "queue_growth"]
