"""The one reader of results JSON for the exporters: every figure of every run, flattened.

Results files come in more than one shape (older ones carry only per-run summaries; newer runs
add ``samples``, ``fingerprint``, ``valid``/``invalid_reasons``, ``warmup`` and, in A/B mode,
``side``). Everything the exporters need is read here, defensively, so that the pytest-benchmark,
CSV and Otava writers never look into a run themselves.

A :class:`Figure` is one (test, deployment, load point, side, metric) of one results file:
its metric table entry (unit, direction), the per-request samples when the file stored them, the
summary (n, mean, std, min, max, p50/p90/p99) when it did not, or the run-level value.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics
from ..baseline.fingerprint import machine_fields as fingerprint_fields
from ..results import load_results


class ExportError(ValueError):
    """A results file or an option the exporters cannot use; the message names it."""


@dataclass(frozen=True)
class Figure:
    test: str                 # the pytest node id of the test that made the run
    deployment: str
    load: str                 # the load point label ("rate=4/s"), "" when the run had none
    side: str                 # "A"/"B" in A/B mode, else ""
    benchmark: str
    metric: metrics.Metric
    samples: tuple[float, ...] | None = None    # per-request samples, in metric.unit
    summary: dict | None = None                 # metrics.summarize() output when no samples were stored
    value: float | None = None                  # run-level figure (throughputs, energy)
    round: int | None = None                    # the A/B round (``ab_round``) that made the run, else None
    run_in_round: int | None = None             # which of a round's runs (``ab_run``), when a round has several
    run: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """"samples", "summary" or "value": where the numbers come from."""
        return "samples" if self.samples is not None else ("summary" if self.summary is not None else "value")

    @property
    def load_label(self) -> str:
        """The load point's name that does not move with the probe: the name the gate judges the
        run under (``gate_name``, e.g. ``load-sweep[r0]``: the ladder's rung, not its rate), else
        ``<benchmark>[r<ladder_index>]`` (files from before ``gate_name``), else the load point as
        recorded (``rate=4/s``). Trend series keyed by it survive a re-probe that moves every rate."""
        if isinstance(self.run.get("gate_name"), str) and self.run["gate_name"]:
            return self.run["gate_name"]
        extra = self.run.get("extra")
        index = extra.get("ladder_index") if isinstance(extra, dict) else None
        if isinstance(index, int) and not isinstance(index, bool):
            return f"{self.benchmark}[r{index}]"
        return self.load or self.benchmark

    @property
    def series_key(self) -> tuple[str, str, str, str]:
        """A trend series: (test, deployment, stable load label, side)."""
        return (self.test, self.deployment, self.load_label, self.side)


@dataclass(frozen=True)
class ResultsFile:
    path: str
    created: str                                # ISO time the session wrote it
    timestamp: int                              # the same, as Unix seconds
    commit: str | None                          # git commit recorded by the run, if any
    fingerprint: dict                           # machine fingerprint (top level, else the first run's)
    figures: tuple[Figure, ...]
    skipped: tuple[str, ...]                    # figures left out, with the reason


def read(path: str | Path, *, include_invalid: bool = False) -> ResultsFile:
    """Load one results file (errors name the file) and flatten it into figures."""
    try:
        doc = load_results(Path(path))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return from_document(doc, str(path), include_invalid=include_invalid)


def from_document(doc: dict, path: str = "<results>", *, include_invalid: bool = False) -> ResultsFile:
    """Runs marked ``valid: false`` are left out (and listed in ``skipped``) unless ``include_invalid``:
    a trend tool cannot tell an invalid measurement from a regression."""
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise ExportError(f"{path}: 'runs' is missing or not a list")
    figures: list[Figure] = []
    skipped: list[str] = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ExportError(f"{path}: runs[{i}] is not an object")
        if run.get("valid") is False and not include_invalid:
            reasons = "; ".join(map(str, run.get("invalid_reasons") or [])) or "no reason given"
            skipped.append(f"{_where(run)}: run marked invalid ({reasons})")
            continue
        figures.extend(_run_figures(run, skipped))
    created = str(doc.get("created") or "")
    return ResultsFile(path=path, created=created, timestamp=_unix_time(created, path), commit=_commit(doc),
                       fingerprint=_fingerprint(doc), figures=tuple(figures), skipped=tuple(skipped))


def _run_figures(run: dict, skipped: list[str]) -> list[Figure]:
    base = dict(test=str(run.get("test") or run.get("benchmark") or "?"), deployment=str(run.get("deployment") or ""),
                load=str(run.get("load") or ""), side=str(run.get("side") or ""),
                benchmark=str(run.get("benchmark") or ""), round=_tag(run, "ab_round"), run_in_round=_tag(run, "ab_run"),
                run=run)
    where = _where(run)
    out: list[Figure] = []
    samples = run.get("samples") if isinstance(run.get("samples"), dict) else {}
    summary = run.get("summary") if isinstance(run.get("summary"), dict) else {}
    for name in sorted(set(samples) | set(summary)):
        info = _describe(name, where, skipped)
        if info is None:
            continue
        values = samples.get(name)
        if isinstance(values, list) and values:
            out.append(Figure(metric=info, samples=tuple(float(v) for v in values), **base))
        elif isinstance(summary.get(name), dict) and summary[name].get("n"):
            out.append(Figure(metric=info, summary=summary[name], **base))
        else:
            skipped.append(f"{where}::{name}: no samples (every request failed?)")
    scalars = run.get("scalars") if isinstance(run.get("scalars"), dict) else {}
    for name in sorted(scalars):
        info = _describe(name, where, skipped)
        value = scalars[name]
        if info is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            skipped.append(f"{where}::{name}: value {value!r} is not a number")
            continue
        out.append(Figure(metric=info, value=float(value), **base))
    return out


def _tag(run: dict, key: str) -> int | None:
    """An A/B tag of the run (the runner writes it on the run and in ``extra``)."""
    value = run.get(key, (run.get("extra") or {}).get(key) if isinstance(run.get("extra"), dict) else None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _where(run: dict) -> str:
    return "::".join(str(p) for p in (run.get("test") or run.get("benchmark") or "?", run.get("load"), run.get("side"))
                     if p)


def _describe(name: str, where: str, skipped: list[str]) -> metrics.Metric | None:
    try:
        return metrics.describe(name)
    except metrics.MetricError:
        skipped.append(f"{where}::{name}: not in the metric table (unit and direction unknown)")
        return None


def _unix_time(created: str, path: str) -> int:
    try:
        moment = _dt.datetime.fromisoformat(created)
    except ValueError:
        raise ExportError(f"{path}: 'created' is {created!r}, not an ISO date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return int(moment.timestamp())


def _commit(doc: dict) -> str | None:
    for holder in (doc, doc.get("fingerprint") or {}, *(r.get("fingerprint") or {} for r in doc.get("runs", [])
                                                          if isinstance(r, dict))):
        if isinstance(holder, dict) and isinstance(holder.get("git_commit"), str) and holder["git_commit"]:
            return holder["git_commit"]
    return None


def _fingerprint(doc: dict) -> dict:
    top = doc.get("fingerprint")
    if isinstance(top, dict) and top:
        return top
    for run in doc.get("runs", []):
        if isinstance(run, dict) and isinstance(run.get("fingerprint"), dict) and run["fingerprint"]:
            return run["fingerprint"]
    return {}


def machine_fields(fingerprint: dict) -> dict[str, Any]:
    """The machine half's flat fields (``fingerprint.machine_fields``): pytest-benchmark's
    ``machine_info`` and the CSV columns hold no nested maps."""
    return {k: v for k, v in fingerprint_fields(fingerprint).items() if not isinstance(v, dict)}


__all__ = ["ExportError", "Figure", "ResultsFile", "from_document", "machine_fields", "read"]
