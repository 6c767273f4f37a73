"""One benchmark run against its baseline: compare, record a candidate, or refresh.

This is the whole decision a test's ``disagg_baseline.check(...)`` makes, without pytest in it
(the plugin only turns the result into a failure, a warning or a summary line):

- no baseline for this machine fingerprint → the run is recorded as a *candidate*;
- a baseline measured on another subject (model, medium config or workload changed) → not
  compared (it would compare different experiments), reported as a *mismatch*, candidate recorded;
- otherwise every metric is judged by the gate;
- with refresh, the run becomes the baseline (after being compared with the old one when it
  could be read, so the refresh shows what it replaced).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import verdicts as words
from . import document, gate
from .fingerprint import Fingerprint, changed_fields
from ..metrics import default_tolerances
from .settings import Settings
from .store import BaselineError, BaselineStore

COMPARED, CANDIDATE, MISMATCH, REFRESHED, OFF = "compared", "candidate", "mismatch", "refreshed", "off"


@dataclass
class CheckResult:
    benchmark: str
    status: str                                   # compared | candidate | mismatch | refreshed | off
    mode: str
    verdicts: list[gate.Verdict] = field(default_factory=list)
    baseline_path: Path | None = None
    candidate_path: Path | None = None
    message: str = ""

    @property
    def regressions(self) -> list[gate.Verdict]:
        return [v for v in self.verdicts if v.verdict == gate.REGRESSION]

    @property
    def improvements(self) -> list[gate.Verdict]:
        return [v for v in self.verdicts if v.verdict == gate.IMPROVEMENT]

    @property
    def failed(self) -> bool:
        """Whether this result fails the test in its mode (warn never fails; refresh never fails)."""
        if self.mode in ("off", "warn") or self.status == REFRESHED:
            return False
        if self.regressions:
            return True
        return self.mode == "strict" and self.status in (CANDIDATE, MISMATCH)

    def table(self) -> str:
        return gate.format_table(self.verdicts) if self.verdicts else ""

    def report(self) -> str:
        """The text a failure or warning shows: what happened, then the table."""
        return "\n".join(p for p in (self.message, self.table()) if p)

    @property
    def word(self) -> str:
        """The one-word summary (:mod:`pytest_disagg.verdicts`): the worst metric's verdict, or
        ``not compared`` when there was nothing to compare with (candidate, mismatch, error)."""
        if self.status in (CANDIDATE, MISMATCH, "error") or (self.status != OFF and not self.verdicts):
            return words.NOT_COMPARED
        return gate.summary_word(self.verdicts)

    def verdict_dicts(self) -> list[dict]:
        """Verdicts for the results JSON; a run without comparison is one ``not compared`` entry
        for every metric (``*``) whose ``status`` says why (candidate, mismatch, error)."""
        if self.status in (CANDIDATE, MISMATCH, "error"):
            return [{"metric": "*", "verdict": words.NOT_COMPARED, "status": self.status, "reason": self.message}]
        return [v.to_json() for v in self.verdicts]

    def to_json(self) -> dict:
        return {
            "benchmark": self.benchmark, "status": self.status, "mode": self.mode,
            "baseline_path": str(self.baseline_path) if self.baseline_path else None,
            "candidate_path": str(self.candidate_path) if self.candidate_path else None,
            "message": self.message, "verdicts": self.verdict_dicts(),
            "word": self.word,
        }


def run_check(store: BaselineStore, settings: Settings, *, benchmark: str, fingerprint: Fingerprint,
              samples: Mapping[str, Any] | None = None, scalars: Mapping[str, float] | None = None,
              config: Mapping[str, Any] | None = None, workload: Mapping[str, Any] | None = None,
              directions: Mapping[str, str] | None = None, commit: str | None = None,
              tolerances: Mapping[str, float] | None = None) -> CheckResult:
    """Compare (or record) one run; raises :class:`BaselineError` for an unreadable baseline unless
    ``settings.refresh`` (then the broken file is replaced and the message says so)."""
    doc = document.build(benchmark=benchmark, fingerprint=fingerprint, samples=samples, scalars=scalars,
                         config=config, workload=workload, directions=directions, commit=commit)
    path = store.path(fingerprint.machine_hash, benchmark)
    tol = {**settings.tolerances, **(tolerances or {})}
    try:
        baseline = store.load(fingerprint.machine_hash, benchmark)
        unreadable = ""
    except BaselineError as exc:
        if not settings.refresh:
            raise
        baseline, unreadable = None, f" (it replaced an unreadable file: {exc})"
    result = CheckResult(benchmark=benchmark, status=COMPARED, mode=settings.mode, baseline_path=path)

    if baseline is not None and baseline["fingerprint"].get("subject_hash") != fingerprint.subject_hash:
        changed = changed_fields(baseline["fingerprint"]["subject"], fingerprint.subject)
        what = ", ".join(changed) or "subject"
        if not settings.refresh:
            result.status = MISMATCH
            result.candidate_path = store.save_candidate(doc)
            result.message = (f"baseline {path} was measured with another {what} (hash "
                              + "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
                              + f"); not compared. Candidate recorded at {result.candidate_path}; "
                              f"promote it with `pytest-disagg baselines refresh` if the change is intended.")
            return result
        baseline = None
        unreadable = f" (the old baseline had another {what})"

    if baseline is not None:
        result.verdicts = gate.compare_metrics(baseline["metrics"], samples or {}, scalars or {},
                                               tolerances=tol, directions=directions,
                                               confidence=settings.confidence,
                                               defaults=default_tolerances(fingerprint.machine))
    if settings.refresh:
        store.save(doc, refresh=True)
        result.status = REFRESHED
        result.message = f"baseline written: {path}{unreadable}"
    elif baseline is None:
        result.status = CANDIDATE
        result.candidate_path = store.save_candidate(doc)
        result.message = (f"no baseline for {benchmark!r} on machine {fingerprint.machine_hash}: candidate "
                          f"recorded at {result.candidate_path}; promote it with "
                          f"`pytest-disagg baselines refresh` (or run with --disagg-refresh-baselines)")
    else:
        n_reg, n_imp = len(result.regressions), len(result.improvements)
        if n_reg:
            result.message = f"{benchmark}: {n_reg} metric(s) regressed against {path}"
        elif n_imp:
            result.message = (f"{benchmark}: {n_imp} metric(s) improved beyond tolerance against {path}; "
                              f"refresh the baseline to keep the gain")
        else:
            n_open = sum(1 for v in result.verdicts if v.verdict == words.UNDECIDED)
            result.message = (f"{benchmark}: no regression against {path}, but {n_open} metric(s) undecided "
                              f"(the interval straddles the tolerance)" if n_open
                              else f"{benchmark}: the same as {path} (within tolerance)")
    return result


__all__ = ["CANDIDATE", "COMPARED", "CheckResult", "MISMATCH", "OFF", "REFRESHED", "run_check"]
