"""The files a report is made from: results JSON (``--disagg-json``) and baseline documents.

Why strict here and lenient later: a report drawn from a truncated or foreign file would show
wrong pictures without saying so, so every file is checked once, up front, and a problem stops
the command with the file and the field named (exit 2). After that, the plotting code may
assume the shape checked here and treats every *optional* part (energy, clocks, CIs, derived
results) as possibly absent.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..baseline.document import BaselineError, validate
from ..baseline.fingerprint import machine_fields
from ..results import READABLE_SCHEMAS, SCHEMA_VERSION, load_results, upgrade

KIND_RESULTS = "results"
KIND_BASELINE = "baseline"


class ReportInputError(ValueError):
    """A file (or document) the report cannot use; the message names it and what is wrong."""


@dataclass(frozen=True)
class Document:
    """One input: a session's results, or one stored baseline (history only)."""

    source: str                    # the file name, or "<results>" for a dict given in Python
    kind: str                      # KIND_RESULTS | KIND_BASELINE
    data: Mapping[str, Any] = field(repr=False)

    @property
    def created(self) -> str:
        return str(self.data.get("created") or "")

    @property
    def created_at(self) -> _dt.datetime:
        """``created`` as an aware datetime (unparseable or missing: the earliest time)."""
        try:
            when = _dt.datetime.fromisoformat(self.created)
        except ValueError:
            return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
        return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)

    @property
    def machine(self) -> dict[str, Any]:
        return machine_fields(self.data.get("fingerprint"))


def _need(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise ReportInputError(f"{source}: {what}")


def check_results(data: Any, source: str = "<results>") -> dict:
    """``data`` if it is a usable results document, else :class:`ReportInputError`."""
    _need(isinstance(data, dict), source, f"expected a JSON object, found {type(data).__name__}")
    _need(data.get("schema_version") in READABLE_SCHEMAS, source,
          f"not a pytest-disagg results file of schema {' or '.join(map(str, READABLE_SCHEMAS))} "
          f"(schema_version={data.get('schema_version')!r})")
    _need(isinstance(data.get("runs"), list), source, "field 'runs' missing or not a list")
    data = upgrade(data)      # schema 1 (older files) read in the current shape
    assert data["schema_version"] == SCHEMA_VERSION
    _need(isinstance(data.get("runs"), list), source, "field 'runs' missing or not a list")
    for key in ("deployments", "derived", "fingerprint", "options"):
        _need(isinstance(data.get(key, {}), dict), source, f"field {key!r} is not an object")
    for i, run in enumerate(data["runs"]):
        where = f"runs[{i}]"
        _need(isinstance(run, dict), source, f"{where} is not an object")
        for key in ("benchmark", "setup"):
            _need(isinstance(run.get(key), str) and run[key], source, f"{where}: field {key!r} missing or empty")
        for key in ("summary", "scalars", "energy", "extra", "workload"):
            _need(run.get(key) is None or isinstance(run[key], dict), source,
                  f"{where} ({run['setup']}): field {key!r} is not an object")
        for metric, summary in (run.get("summary") or {}).items():
            _need(isinstance(summary, dict), source, f"{where} ({run['setup']}): summary.{metric} is not an object")
    return data


def check_document(data: Any, source: str) -> Document:
    """Tell a results file from a baseline file and check it."""
    _need(isinstance(data, dict), source, f"expected a JSON object, found {type(data).__name__}")
    if "runs" not in data and "metrics" in data and "benchmark" in data:
        try:
            return Document(source, KIND_BASELINE, validate(data, source))
        except BaselineError as exc:
            raise ReportInputError(str(exc)) from None
    return Document(source, KIND_RESULTS, check_results(data, source))


def load_document(path: str | Path) -> Document:
    """Read and check one input file; every problem is a :class:`ReportInputError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise ReportInputError(f"{path}: is a directory; give results or baseline JSON files")
    try:
        data = load_results(path)   # its errors already name the file and say what is wrong
    except UnicodeDecodeError as exc:
        raise ReportInputError(f"{path}: not a text file ({exc.reason}); expected JSON") from None
    except ValueError as exc:
        if "not a pytest-disagg results file" not in str(exc):
            raise ReportInputError(str(exc)) from None
        data = json.loads(path.read_text())   # parsed fine: perhaps a baseline document
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc})") from None
    return check_document(data, str(path))


def merge_results(docs: list[Document]) -> Document:
    """Several results files of one machine and software (e.g. one pytest run per set-up, as a
    nightly job shards them) as one session: runs and deployments together, the newest options.

    Files from different machines or versions are history, not parts of one session: merging
    them is refused, naming the two that differ."""
    _need(bool(docs), "--merge", "no results files to merge")
    for d in docs:
        _need(d.kind == KIND_RESULTS, d.source, "--merge takes results files only (this is a baseline file)")
    first = docs[0]
    for d in docs[1:]:
        _need(not first.data.get("fingerprint") or not d.data.get("fingerprint")
              or first.data["fingerprint"] == d.data["fingerprint"], d.source,
              f"its fingerprint differs from {first.source}'s: different machines or versions are history, "
              "report them without --merge")
    newest = max(docs, key=lambda d: d.created_at)
    merged: dict[str, Any] = {k: v for k, v in newest.data.items() if k not in ("runs", "deployments", "derived")}
    merged["fingerprint"] = next((d.data["fingerprint"] for d in docs if d.data.get("fingerprint")), {})
    merged["runs"] = [run for d in sorted(docs, key=lambda d: d.created_at) for run in d.data["runs"]]
    merged["deployments"] = {}
    merged["derived"] = {}
    for d in docs:
        for key, dep in (d.data.get("deployments") or {}).items():
            _need(key not in merged["deployments"] or merged["deployments"][key] == dep, d.source,
                  f"deployment {key!r} differs from the one of the same name in another file")
            merged["deployments"][key] = dep
        for key, value in (d.data.get("derived") or {}).items():
            if isinstance(value, list):
                merged["derived"].setdefault(key, []).extend(value)
            else:
                merged["derived"].setdefault(key, value)
    return Document(" + ".join(d.source for d in docs), KIND_RESULTS, check_results(merged, "merged results"))


def as_document(data: Any, source: str = "<results>") -> Document:
    """A dict given in Python (``build_report(results, ...)``), or an already loaded Document."""
    if isinstance(data, Document):
        return data
    return check_document(data, source)


__all__ = ["Document", "KIND_BASELINE", "KIND_RESULTS", "ReportInputError", "as_document", "check_document",
           "check_results", "load_document", "machine_fields", "merge_results"]
