"""The history of each figure across results files: a tidy CSV, and Apache Otava's CSV input.

One value per (results file, series, metric) — the series being (test, deployment, load point,
A/B side). Per-request metrics give their median (``<metric>_p50``) and 99th percentile
(``<metric>_p99``; numpy's linear interpolation, as the results' summaries), run-level figures
(throughputs, energy) their value. Both come from the stored summary when a file has no samples,
so old and new results files give the same numbers.

``--format csv``: one file, one row per (results file, series, metric, run) with n, mean, p50,
p90, p99, min, max — for spreadsheets, pandas, or any tool that wants long data. An A/B file
ran each side once per round: every round is a row, numbered in ``round`` (and ``run_in_round``
when a round ran a side several times); both are empty outside A/B.

``--format otava``: a directory with ``otava.yaml`` (one Otava test per series, each metric with
its direction: -1 lower is better, 1 higher is better) and one CSV per series (``time``,
attributes ``commit``, ``results_file``, the fingerprint's machine fields, then one column per
metric); run ``otava analyze <test>`` from that directory. Otava needs a value in every cell, so a
metric missing from some of a series' files is left out of that series (and reported). Otava's
points are ordered by time and a file has one time, so a series a file ran several times (the
rounds of an A/B) becomes one point: each column's median over those runs, with a ``rounds``
attribute and a note on stderr saying so.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .adapter import Figure, ResultsFile, machine_fields

CSV_COLUMNS = ("time", "results_file", "commit", "test", "deployment", "load", "side", "round", "run_in_round",
               "benchmark", "metric", "unit", "direction", "source", "n", "value", "mean", "p50", "p90", "p99", "min",
               "max")
OTAVA_CONFIG = "otava.yaml"


def figure_numbers(fig: Figure) -> dict[str, float | int]:
    """n, mean, p50, p90, p99, min, max of a figure (a run-level value is all of them, n = 1)."""
    if fig.samples is not None:
        x = np.asarray(fig.samples, dtype=float)
        p50, p90, p99 = np.quantile(x, [0.5, 0.9, 0.99])
        return {"n": int(x.size), "mean": float(x.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
                "min": float(x.min()), "max": float(x.max())}
    if fig.summary is not None:
        out = {"n": int(fig.summary["n"])}
        out.update({k: float(fig.summary[k]) for k in ("mean", "p50", "p90", "p99", "min", "max") if k in fig.summary})
        return out
    return {"n": 1, **{k: fig.value for k in ("mean", "p50", "p90", "p99", "min", "max")}}


def headline(fig: Figure) -> dict[str, float]:
    """The columns a figure gives a history: ``<metric>_p50``/``_p99``, or ``<metric>``."""
    nums = figure_numbers(fig)
    if fig.kind == "value":
        return {fig.metric.name: float(nums["p50"])}
    return {f"{fig.metric.name}_{q}": float(nums[q]) for q in ("p50", "p99") if q in nums}


def _iso(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


def write_csv(files: Sequence[ResultsFile], path: Path) -> int:
    """The tidy CSV; returns the number of rows."""
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, CSV_COLUMNS)
        out.writeheader()
        for rf in sorted(files, key=lambda f: f.timestamp):
            for fig in rf.figures:
                nums = figure_numbers(fig)
                out.writerow({"time": _iso(rf.timestamp), "results_file": rf.path, "commit": rf.commit or "",
                              "test": fig.test, "deployment": fig.deployment, "load": fig.load, "side": fig.side,
                              "round": _optional(fig.round), "run_in_round": _optional(fig.run_in_round),
                              "benchmark": fig.benchmark, "metric": fig.metric.name, "unit": fig.metric.unit,
                              "direction": fig.metric.direction, "source": fig.kind,
                              "value": nums.get("p50"), **nums})
                rows += 1
    return rows


def slug(key: tuple[str, str, str, str]) -> str:
    """A file- and Otava-friendly name of a series key (test, deployment, load, side):
    ``test_load_sweep.nixl-gpu-pc0.load-sweep.r0`` (the stable load label, ``Figure.load_label``)."""
    test, deployment, load, side = key
    short = test.rsplit("::", 1)[-1]
    parts = [short, "" if deployment in short else deployment, load, side]
    text = re.sub(r"[^A-Za-z0-9_.=-]+", "_", ".".join(p for p in parts if p).replace("[", ".").replace("]", "."))
    return re.sub(r"\.{2,}", ".", text).strip("._") or "series"


@dataclass(frozen=True)
class Point:
    """One results file's values of one series: a column's median when the file ran it more than
    once (an A/B file has one run per round and side), ``rounds`` saying how many."""

    file: ResultsFile
    values: dict[str, float]
    directions: dict[str, int]
    rounds: int


def file_points(rf: ResultsFile) -> dict[tuple, Point]:
    """The file's point of every series it holds (see :class:`Point`)."""
    per_key: dict[tuple, tuple[dict[str, list[float]], dict[str, int]]] = {}
    for fig in rf.figures:
        values, directions = per_key.setdefault(fig.series_key, ({}, {}))
        for column, value in headline(fig).items():
            values.setdefault(column, []).append(value)
            directions[column] = 1 if fig.metric.direction == "higher" else -1
    return {key: Point(rf, {c: statistics.median(v) for c, v in values.items()}, directions,
                       max(map(len, values.values()), default=1))
            for key, (values, directions) in per_key.items()}


def write_otava(files: Sequence[ResultsFile], out_dir: Path) -> tuple[list[str], list[str]]:
    """Otava's input (see the module text); returns (test names, notes on what was left out or
    collapsed, each a sentence)."""
    series: dict[tuple, list[Point]] = {}
    for rf in sorted(files, key=lambda f: f.timestamp):
        for key, point in file_points(rf).items():
            series.setdefault(key, []).append(point)
    out_dir.mkdir(parents=True, exist_ok=True)
    tests, notes, names = {}, [], set()
    for key, points in sorted(series.items()):
        name = _unique(slug(key), names)
        common = set.intersection(*(set(p.values) for p in points))
        dropped = sorted(set().union(*(set(p.values) for p in points)) - common)
        if dropped:
            notes.append(f"left out {name}: {', '.join(dropped)} missing from some results files")
        notes += [f"{name}: {p.file.path} ran it {p.rounds} times (A/B rounds); Otava gets each metric's median "
                  "of them (every round: --format csv)" for p in points if p.rounds > 1]
        if common:
            tests[name] = _write_series(out_dir, name, points, sorted(common))
    # JSON is YAML: no YAML writer needed, and Otava's loader reads it as it is.
    (out_dir / OTAVA_CONFIG).write_text(json.dumps({"tests": tests}, indent=2) + "\n")
    return list(tests), notes


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _write_series(out_dir: Path, name: str, points: list[Point], columns: list[str]) -> dict:
    """One series' CSV; returns its entry of ``otava.yaml``. A ``rounds`` attribute is written when
    some point is a median of several runs."""
    machine_keys = sorted({k for p in points for k in machine_fields(p.file.fingerprint)})
    collapsed = any(p.rounds > 1 for p in points)
    attributes = ["commit", "results_file", *(["rounds"] if collapsed else []), *machine_keys]
    file_name = f"{name}.csv"
    with open(out_dir / file_name, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["time", *attributes, *columns])
        for p in points:
            machine = machine_fields(p.file.fingerprint)
            attrs = [p.file.commit or "", p.file.path, *([str(p.rounds)] if collapsed else []),
                     *(_cell(machine.get(k)) for k in machine_keys)]
            out.writerow([_iso(p.file.timestamp), *attrs, *(repr(p.values[c]) for c in columns)])
    directions = points[-1].directions
    return {"type": "csv", "file": file_name, "time_column": "time", "attributes": attributes,
            "metrics": {c: {"direction": directions[c]} for c in columns}}


def _optional(number: int | None) -> int | str:
    return "" if number is None else number


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


__all__ = ["CSV_COLUMNS", "OTAVA_CONFIG", "Point", "figure_numbers", "file_points", "headline", "slug", "write_csv",
           "write_otava"]
