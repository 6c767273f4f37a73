"""Read-only views of the store as rows: listing, one file, two fingerprints side by side, and
one metric across fingerprints over time.

Rows (lists of plain values) rather than printed text so that the console script formats them
with tabulate and the report can plot the same history without parsing a table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import stats
from ..metrics import describe
from . import gate
from .fingerprint import MACHINE_FIELDS, changed_fields, describe_machine
from ..metrics import default_tolerances
from .store import BaselineStore, Entry, file_name, matches


class UnknownIdError(LookupError):
    """A fingerprint or benchmark the store does not hold (or a prefix matching several)."""


def _matches(entry: Entry, pattern: str | None) -> bool:
    """An unreadable file has no benchmark id, only its file name (the id with ``::`` as ``.``):
    the id still finds it, so that asking for it reports why it cannot be read."""
    if not pattern:
        return True
    names = (entry.benchmark, entry.path.stem, entry.path.name)
    if matches(pattern, *names):
        return True
    return entry.doc is None and (file_name(pattern) == entry.path.name or matches(pattern.replace("::", "."), *names))


def machine_hashes(store: BaselineStore, *, candidates: bool = True) -> list[str]:
    hashes = {e.machine_hash for e in store.entries()}
    if candidates:
        hashes |= {e.machine_hash for e in store.entries(candidates=True)}
    return sorted(hashes)


def resolve_machine(store: BaselineStore, prefix: str) -> str:
    """A full machine hash from a unique prefix (4 characters or more)."""
    known = machine_hashes(store)
    if len(prefix) < 4:
        raise UnknownIdError(f"fingerprint {prefix!r}: give at least 4 characters of its hash")
    hits = [h for h in known if h.startswith(prefix)]
    if not hits:
        listing = ", ".join(known) or f"none (no baselines under {store.root})"
        raise UnknownIdError(f"unknown fingerprint {prefix!r}; known: {listing}")
    if len(hits) > 1:
        raise UnknownIdError(f"fingerprint {prefix!r} is ambiguous: {', '.join(hits)}")
    return hits[0]


def machine_of(store: BaselineStore, machine_hash: str) -> dict:
    """The machine fields stored under a fingerprint (from its first readable file)."""
    for candidates in (False, True):
        for e in store.entries(candidates=candidates):
            if e.machine_hash == machine_hash and e.doc:
                return dict(e.doc["fingerprint"]["machine"])
    return {}


def entries_of(store: BaselineStore, machine_hash: str, pattern: str | None = None,
               *, candidates: bool = False) -> list[Entry]:
    out = [e for e in store.entries() if e.machine_hash == machine_hash and _matches(e, pattern)]
    if candidates:
        out += [e for e in store.entries(candidates=True) if e.machine_hash == machine_hash and _matches(e, pattern)]
    return out


def one_entry(store: BaselineStore, machine_hash: str, pattern: str) -> Entry:
    found = entries_of(store, machine_hash, pattern, candidates=True)
    if not found:
        known = ", ".join(e.benchmark for e in entries_of(store, machine_hash, candidates=True)) or "none"
        raise UnknownIdError(f"no benchmark matching {pattern!r} under fingerprint {machine_hash}; known: {known}")
    if len(found) > 1:
        names = ", ".join(f"{e.benchmark}{' (candidate)' if e.candidate else ''}" for e in found)
        raise UnknownIdError(f"{pattern!r} matches several under fingerprint {machine_hash}: {names}")
    return found[0]


# --- list -----------------------------------------------------------------------------------------

LIST_HEADERS = ["fingerprint", "machine", "benchmark", "kind", "created", "metrics", "git"]


def list_rows(store: BaselineStore, pattern: str | None = None) -> list[list[Any]]:
    rows = []
    for candidates in (False, True):
        for e in store.entries(candidates=candidates):
            if not _matches(e, pattern):
                continue
            kind = "candidate" if candidates else "baseline"
            if e.error:
                rows.append([e.machine_hash, "-", e.path.name, f"{kind}: UNREADABLE", "-", "-", e.error])
                continue
            doc = e.doc
            rows.append([e.machine_hash, describe_machine(doc["fingerprint"]["machine"]), e.benchmark, kind,
                         doc["created"], len(doc["metrics"]), (doc.get("git_commit") or "-")[:10]])
    return rows


# --- show -----------------------------------------------------------------------------------------

METRIC_HEADERS = ["metric", "kind", "n", "median", "p10", "p90", "p99", "95 % CI of median", "unit", "better"]


def metric_rows(doc: dict) -> list[list[Any]]:
    rows = []
    for name, m in sorted(doc["metrics"].items()):
        if m["kind"] == "scalar":
            rows.append([name, "scalar", "-", m["value"], "-", "-", "-", "-", m.get("unit", ""), m["direction"]])
        else:
            ci = m.get("median_ci")
            rows.append([name, "samples", m["n"], m.get("median"), m.get("p10"), m.get("p90"), m.get("p99"),
                         f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-", m.get("unit", ""), m["direction"]])
    return rows


def field_rows(fields: dict) -> list[list[Any]]:
    return [[k, show_value(v)] for k, v in sorted(fields.items())]


# --- diff -----------------------------------------------------------------------------------------

DIFF_HEADERS = ["benchmark", "metric", "A", "B", "change", "CI", "verdict (B vs A)"]


@dataclass
class Diff:
    machine_changes: dict[str, tuple[Any, Any]]
    rows: list[list[Any]]
    only_a: list[str]
    only_b: list[str]
    words: list[str] = field(default_factory=list)   # each row's verdict word (the row's text may add a reason)


def diff(store: BaselineStore, machine_a: str, machine_b: str, pattern: str | None = None,
         *, tolerances: dict | None = None, confidence: float = gate.DEFAULT_CONFIDENCE) -> Diff:
    """Every benchmark the two fingerprints share, metric by metric, judged by the gate (B vs A)."""
    a = {e.benchmark: e for e in entries_of(store, machine_a, pattern) if e.doc}
    b = {e.benchmark: e for e in entries_of(store, machine_b, pattern) if e.doc}
    if not a and not b:
        raise UnknownIdError(f"no readable baselines under {machine_a} or {machine_b}"
                             + (f" matching {pattern!r}" if pattern else ""))
    changes = changed_fields(machine_of(store, machine_a), machine_of(store, machine_b))
    rows, words = [], []
    for name in sorted(set(a) & set(b)):
        verdicts = gate.compare_metrics(a[name].doc["metrics"], _samples(b[name].doc), _scalars(b[name].doc),
                                        tolerances=tolerances, directions=_directions(b[name].doc),
                                        confidence=confidence,
                                        defaults=default_tolerances(b[name].doc["fingerprint"]["machine"]))
        for row, v in zip(gate.table_rows(verdicts), verdicts):
            metric, base, now, change, ci, _tol, verdict = row
            rows.append([name, metric, base, now, change, ci, verdict])
            words.append(v.verdict)
    return Diff(changes, rows, sorted(set(a) - set(b)), sorted(set(b) - set(a)), words)


def _samples(doc: dict) -> dict:
    return {k: m["samples"] for k, m in doc["metrics"].items() if m["kind"] == "samples"}


def _scalars(doc: dict) -> dict:
    return {k: m["value"] for k, m in doc["metrics"].items() if m["kind"] == "scalar"}


def _directions(doc: dict) -> dict:
    return {k: m["direction"] for k, m in doc["metrics"].items()}


# --- history --------------------------------------------------------------------------------------

STATS = ("median", "mean", "p10", "p50", "p90", "p99", "value")


@dataclass
class History:
    metric: str
    stat: str
    changing: list[str]          # machine fields that differ between the rows
    headers: list[str]
    rows: list[list[Any]]
    points: list[dict]           # the same, as dicts (for plots)
    change_points: list[dict] = field(default_factory=list)   # per benchmark series, when asked for
    unreadable: list[str] = field(default_factory=list)       # matching baseline files left out: why


def _results_points(documents: Sequence[tuple[str, Mapping]], metric: str, stat: str,
                    pattern: str | None) -> list[dict]:
    """History points from results files (schema 2 carry the fingerprint; older ones say "-").

    A run's series id is the benchmark id its baseline would have (module::test::name[load]), so
    results and baselines of one benchmark form one series."""
    key = {"median": "p50", "value": "p50"}.get(stat, stat)
    points = []
    for source, doc in documents:
        top = doc.get("fingerprint") or {}
        for run in doc.get("runs") or []:
            test = str(run.get("test") or "")
            path, _, name = test.partition("::")
            bench = f"{Path(path).stem}::{name}::{run.get('benchmark')}[{run.get('load')}]" if name else str(
                run.get("benchmark"))
            if pattern and not matches(pattern, bench, str(run.get("benchmark"))):
                continue
            summary = (run.get("summary") or {}).get(metric)
            if isinstance(summary, Mapping) and summary.get(key) is not None:
                value, n = summary[key], summary.get("n")
                ci = (summary.get("ci") or {}).get(key)
            elif (run.get("scalars") or {}).get(metric) is not None:
                value, n, ci = run["scalars"][metric], None, None
            else:
                continue
            fp = run.get("fingerprint") or top
            machine = fp.get("machine") or {}
            points.append({"created": str(doc.get("created") or ""), "benchmark": bench, "value": float(value),
                           "ci": ci, "n": n, "unit": describe_unit(metric), "candidate": False,
                           "fingerprint": fp.get("machine_hash") or f"({Path(source).name})",
                           "git": None, "machine": dict(machine)})
    return points


def describe_unit(metric: str) -> str:
    try:
        return describe(metric).unit
    except ValueError:
        return ""


def history(store: BaselineStore | None, metric: str, pattern: str | None = None, *, stat: str = "median",
            candidates: bool = False, results: Sequence[tuple[str, Mapping]] = (),
            change_points: bool = False, max_pvalue: float = stats.DEFAULT_CP_PVALUE) -> History:
    """One metric across every fingerprint (and results file), oldest first, with the machine
    fields that changed; with ``change_points``, where each benchmark's series shifted level
    (:func:`stats.change_points`, Apache Otava's E-Divisive means)."""
    if stat not in STATS:
        raise ValueError(f"stat {stat!r}: choose one of {', '.join(STATS)}")
    points, unreadable = [], []
    sources = ([store.entries()] + ([store.entries(candidates=True)] if candidates else [])) if store else []
    for entries in sources:
        for e in entries:
            if e.error and _matches(e, pattern):
                unreadable.append(e.error)
            if not e.doc or not _matches(e, pattern) or metric not in e.doc["metrics"]:
                continue
            m = e.doc["metrics"][metric]
            value = m["value"] if m["kind"] == "scalar" else m.get(stat if stat != "value" else "median")
            ci = m.get("median_ci") if (m["kind"] == "samples" and stat == "median") else None
            points.append({"created": e.doc["created"], "fingerprint": e.machine_hash, "benchmark": e.benchmark,
                           "value": value, "ci": ci, "n": m.get("n"), "unit": m.get("unit", ""),
                           "candidate": e.candidate, "git": e.doc.get("git_commit"),
                           "machine": e.doc["fingerprint"]["machine"]})
    points += _results_points(results, metric, stat, pattern)
    if not points:
        known = sorted({k for e in store.entries() if e.doc for k in e.doc["metrics"]}) if store else []
        raise UnknownIdError(f"no baseline or results file has metric {metric!r}" + (f" for {pattern!r}" if pattern else "")
                             + f"; metrics stored: {', '.join(known) or 'none'}")
    points.sort(key=lambda p: (p["created"], p["benchmark"]))
    fields = sorted({k for p in points for k in p["machine"]},
                    key=lambda k: (MACHINE_FIELDS.index(k) if k in MACHINE_FIELDS else len(MACHINE_FIELDS), k))
    changing = [f for f in fields if len({repr(p["machine"].get(f)) for p in points}) > 1]
    found = _series_change_points(points, max_pvalue) if change_points else []
    starts = {(c["benchmark"], c["created"]): c for c in found}
    previous: dict[str, float] = {}
    rows = []
    for p in points:
        before = previous.get(p["benchmark"])
        change = f"{(p['value'] / before - 1) * 100:+.1f} %" if before else "-"
        previous[p["benchmark"]] = p["value"]
        ci = f"[{p['ci'][0]:.4g}, {p['ci'][1]:.4g}]" if p["ci"] else "-"
        row = [p["created"], p["fingerprint"] + (" (candidate)" if p["candidate"] else ""), p["benchmark"],
               f"{p['value']:.4g} {p['unit']}".rstrip(), ci, change]
        if change_points:
            cp = starts.get((p["benchmark"], p["created"]))
            row.append(f"<< shift {cp['change'] * 100:+.1f} % (p={cp['pvalue']:.2g})" if cp and cp["change"] is not None
                       else ("<< shift" if cp else ""))
        rows.append(row + [show_value(p["machine"].get(f)) for f in changing])
    headers = (["created", "fingerprint", "benchmark", f"{metric} {stat}", "95 % CI", "vs previous"]
               + (["change point"] if change_points else []) + changing)
    return History(metric, stat, changing, headers, rows, points, found, unreadable)


def _series_change_points(points: list[dict], max_pvalue: float) -> list[dict]:
    """Change points of each benchmark's series (points sorted oldest first): the point that
    starts the new level, the mean before and after, and Otava's p-value."""
    by_bench: dict[str, list[dict]] = {}
    for p in points:
        by_bench.setdefault(p["benchmark"], []).append(p)
    out = []
    for bench, series in by_bench.items():
        for cp in stats.change_points([p["value"] for p in series], max_pvalue=max_pvalue):
            first = series[cp.index]
            out.append({"benchmark": bench, "index": cp.index, "created": first["created"],
                        "fingerprint": first["fingerprint"], **cp.to_json()})
    return out


def show_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


__all__ = ["DIFF_HEADERS", "Diff", "History", "LIST_HEADERS", "METRIC_HEADERS", "STATS", "UnknownIdError",
           "diff", "entries_of", "field_rows", "history", "list_rows", "machine_hashes", "machine_of", "metric_rows",
           "one_entry", "resolve_machine", "show_value"]
