"""The baseline file's content: building it from a run, and checking one read from disk.

One document per benchmark per machine fingerprint. It keeps the raw per-request samples
(rounded to 5 significant digits, far below any tolerance) because the gate bootstraps the
ratio of medians and needs both sides' samples; the summary beside them (n, median, p10/p50/
p90/p99, mean, bootstrap CI of the median) is for people reading the file or its diff.

Validation is strict and names the file: a truncated write, a hand edit gone wrong or a file
from a newer schema must stop the gate with a clear message, never be read as "no baseline"
(which would quietly record a candidate and hide the regression).
"""
from __future__ import annotations

import datetime as _dt
import math
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import stats
from .fingerprint import Fingerprint, stable_hash
from ..metrics import describe

SCHEMA_VERSION = 1
SIGNIFICANT_DIGITS = 5
SUMMARY_CONFIDENCE = 0.95
PERCENTILES = (10, 50, 90, 99)
STORED_STATS = ("median", "mean", *(f"p{p}" for p in PERCENTILES), "ci_confidence")   # summarise()'s numbers


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and what is wrong."""


def round_significant(values, digits: int = SIGNIFICANT_DIGITS) -> list[float]:
    """Plain floats rounded to ``digits`` significant digits (short, stable JSON)."""
    return [float(f"{float(v):.{digits}g}") for v in values]


def summarise(values, *, direction: str, unit: str, confidence: float = SUMMARY_CONFIDENCE) -> dict:
    """Summary of one metric's samples, plus the rounded samples themselves."""
    array = stats.as_samples(values)
    lo, hi = stats.median_ci(array, confidence)
    pcts = np.percentile(array, PERCENTILES)
    summary: dict[str, Any] = {
        "kind": "samples", "direction": direction, "unit": unit, "n": int(array.size),
        "median": float(np.median(array)), "mean": float(np.mean(array)),
        "median_ci": [lo, hi], "ci_confidence": confidence,
    }
    summary.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, pcts)})
    for key in ("median", "mean", *(f"p{p}" for p in PERCENTILES)):
        summary[key] = round_significant([summary[key]])[0]
    summary["median_ci"] = round_significant(summary["median_ci"])
    summary["samples"] = round_significant(array)
    return summary


def scalar_entry(value: float, *, direction: str, unit: str) -> dict:
    number = float(stats.as_samples([value])[0])
    return {"kind": "scalar", "direction": direction, "unit": unit, "value": round_significant([number])[0]}


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checkout's commit (``git rev-parse HEAD``), or None outside a git work tree."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build(*, benchmark: str, fingerprint: Fingerprint, samples: Mapping[str, Any] | None = None,
          scalars: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None,
          workload: Mapping[str, Any] | None = None, directions: Mapping[str, str] | None = None,
          commit: str | None = None, created: str | None = None) -> dict:
    """A baseline document for one benchmark run; every value plain JSON."""
    samples, scalars = dict(samples or {}), dict(scalars or {})
    both = sorted(set(samples) & set(scalars))
    if both:
        raise ValueError(f"metric {both[0]!r} given both as samples and as a scalar")
    if not samples and not scalars:
        raise ValueError(f"benchmark {benchmark!r}: no samples and no scalars to store")
    metrics: dict[str, dict] = {}
    for kind, by_name, make in (("metric", samples, summarise), ("scalar", scalars, scalar_entry)):
        for name, values in by_name.items():
            info = describe(name, directions)
            try:
                metrics[name] = make(values, direction=info.direction, unit=info.unit)
            except stats.StatsError as exc:
                raise ValueError(f"benchmark {benchmark!r}, {kind} {name!r}: {exc}") from None
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": benchmark,
        "created": created or utc_now(),
        "git_commit": commit,
        "fingerprint": fingerprint.to_json(),
        "config": dict(config or {}),
        "workload": dict(workload) if workload is not None else None,
        "workload_hash": fingerprint.subject.get("workload"),
        "metrics": metrics,
    }


# --- validation ---------------------------------------------------------------------------------

def _need(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise BaselineError(f"{source}: {what}")


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(data: Any, source: str) -> dict:
    """Return ``data`` if it is a usable baseline document, else a :class:`BaselineError`."""
    _need(isinstance(data, dict), source, f"expected a JSON object, found {type(data).__name__}")
    version = data.get("schema_version")
    _need(version is not None, source, "no schema_version: not a pytest-disagg baseline file")
    _need(version == SCHEMA_VERSION, source,
          f"unknown schema_version {version!r} (this pytest-disagg reads {SCHEMA_VERSION}); "
          f"upgrade pytest-disagg or refresh the baseline")
    for key, kind in (("benchmark", str), ("created", str), ("fingerprint", dict), ("metrics", dict), ("config", dict)):
        _need(isinstance(data.get(key), kind), source, f"field {key!r} missing or not a {kind.__name__}")
    fp = data["fingerprint"]
    for key in ("machine", "subject"):
        _need(isinstance(fp.get(key), dict), source, f"fingerprint.{key} missing or not an object")
    _need(fp.get("machine_hash") == stable_hash(fp["machine"]), source,
          f"fingerprint.machine_hash {fp.get('machine_hash')!r} does not match its machine fields "
          f"({stable_hash(fp['machine'])}): edited by hand?")
    _need(bool(data["metrics"]), source, "no metrics")
    for name, entry in data["metrics"].items():
        where = f"metric {name!r}"
        _need(isinstance(entry, dict), source, f"{where} is not an object")
        _need(entry.get("direction") in ("lower", "higher"), source, f"{where}: direction must be lower or higher")
        kind = entry.get("kind")
        if kind == "samples":
            values = entry.get("samples")
            _need(isinstance(values, list) and values, source, f"{where}: samples missing or empty")
            bad = next((i for i, v in enumerate(values) if not _finite_number(v)), None)
            _need(bad is None, source, f"{where}: sample {bad} is not a finite number")
            _need(entry.get("n") == len(values), source,
                  f"{where}: n = {entry.get('n')!r} but {len(values)} samples stored (truncated or edited?)")
            stored = [(k, entry[k]) for k in STORED_STATS if k in entry]
            ci = entry.get("median_ci", [])
            stored += [(f"median_ci[{j}]", v) for j, v in enumerate(ci if isinstance(ci, list) else [ci])]
            bad_stat = next((k for k, v in stored if not _finite_number(v)), None)
            _need(bad_stat is None, source, f"{where}: {bad_stat} is {dict(stored).get(bad_stat)!r}, not a finite number")
        elif kind == "scalar":
            _need(_finite_number(entry.get("value")), source, f"{where}: value is not a finite number")
        else:
            raise BaselineError(f"{source}: {where}: kind {kind!r} is neither 'samples' nor 'scalar'")
    return data


__all__ = ["BaselineError", "PERCENTILES", "SCHEMA_VERSION", "build", "git_commit", "round_significant",
           "scalar_entry", "summarise", "utc_now", "validate"]
