"""Results as pytest-benchmark JSON: what ``pytest-benchmark compare``, github-action-benchmark
(``tool: 'pytest'``), Bencher's pytest-benchmark adapter and Otava's importers read.

Those tools ignore ``extra_info``, so every figure is a benchmark of its own: one entry per
(test, deployment, load point, [A/B side,] metric), named
``<test>[<deployment>]::<load>::<metric>`` (``fullname`` starts with the test's file), grouped
per (benchmark, metric) so that ``compare`` prints one table per metric, in one unit.

pytest-benchmark's numbers are seconds and lower is better; its ``ops`` (rounds / total = 1/mean)
is what github-action-benchmark plots, higher is better. So figures are written as:

- times (``ms``, ``s``): in seconds (``ttft_ms`` of 12.5 ms is written 0.0125; the table prints
  it as 12.5 under "ms"), each per-request sample one round;
- other lower-is-better figures (energy: ``J``, ``J/token``): in their own unit, unchanged — the
  table's "time" header is then pytest-benchmark's wording, the unit is in ``extra_info.unit``;
- higher-is-better figures (throughputs, goodput): as their reciprocal, named ``1/<metric>``
  (``1/output_throughput`` in s/tok): lower is then better, like every other entry, and ``ops``
  gives back the throughput itself. A throughput of 0 has no reciprocal and is left out.

``extra_info`` keeps the metric's own name, unit, direction, the transform applied and the run's
context (set-up, medium, validity, gate verdict). The fingerprint goes to ``machine_info``, the
git commit to ``commit_info``. A run stored with only summaries (older results files) gives
entries whose quartile-based fields are estimates, flagged in ``extra_info.estimated``.
"""
from __future__ import annotations

from typing import Iterable

from . import benchstats
from .adapter import ExportError, Figure, ResultsFile, machine_fields

# The pytest-benchmark JSON layout this file follows (its ``version`` field).
FORMAT_VERSION = "5.2.3"
TIME_SCALE = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "ns": 1e-9}


def transform(metric) -> tuple[str, float, str, str]:
    """(name shown, scale, unit written, transform) for a metric of the metric table."""
    if metric.direction == "higher":
        return f"1/{metric.name}", 1.0, reciprocal_unit(metric.unit), "reciprocal"
    if metric.unit in TIME_SCALE:
        return metric.name, TIME_SCALE[metric.unit], "s", "seconds" if metric.unit != "s" else "none"
    return metric.name, 1.0, metric.unit, "none"


def reciprocal_unit(unit: str) -> str:
    """``tok/s`` → ``s/tok``, ``1/s`` → ``s``, ``J`` → ``1/J``, ``1`` → ``1``."""
    if unit in ("", "1"):
        return "1"
    if "/" in unit:
        top, bottom = unit.split("/", 1)
        return bottom if top == "1" else f"{bottom}/{top}"
    return f"1/{unit}"


def short_name(fig: Figure) -> str:
    """The test's function and parameters, with the deployment when the id does not name it."""
    short = fig.test.rsplit("::", 1)[-1]
    return f"{short}[{fig.deployment}]" if fig.deployment and fig.deployment not in short else short


def entry_names(fig: Figure) -> tuple[str, str]:
    """(name, fullname) of the figure's entry, before de-duplication."""
    shown = transform(fig.metric)[0]
    short = short_name(fig)
    prefix = fig.test if fig.test.endswith(short) else f"{fig.test}::{short}"
    tail = "".join(f"::{p}" for p in (fig.load or fig.benchmark, fig.side, shown) if p)
    return short + tail, prefix + tail


def figure_stats(fig: Figure, with_data: bool) -> tuple[dict, list[str]]:
    """(stats block, estimated fields) of one figure; ValueError when it cannot be written."""
    _, scale, _, how = transform(fig.metric)
    if fig.kind == "summary":
        if how == "reciprocal":
            raise ValueError("a higher-is-better figure stored only as a summary has no reciprocal statistics")
        return benchstats.from_summary(fig.summary, scale), list(benchstats.ESTIMATED_FROM_SUMMARY)
    values = list(fig.samples) if fig.samples is not None else [fig.value]
    if how == "reciprocal":
        if any(v <= 0 for v in values):
            raise ValueError(f"{fig.metric.name} is {min(values)}: no reciprocal to write")
        values = [1.0 / v for v in values]
    else:
        values = [v * scale for v in values]
    stats = benchstats.from_samples(values)
    if with_data:
        stats["data"] = values
    return stats, []


def document(results: ResultsFile, *, with_data: bool = False, commit: str | None = None,
             commit_source: str = "results") -> tuple[dict, list[str]]:
    """(pytest-benchmark JSON, list of figures left out with the reason)."""
    skipped = list(results.skipped)
    benchmarks, seen = [], set()
    for fig in results.figures:
        try:
            stats, estimated = figure_stats(fig, with_data)
        except ValueError as exc:
            skipped.append(f"{entry_names(fig)[1]}: {exc}")
            continue
        name, fullname = entry_names(fig)
        base_name, base_full, k = name, fullname, 2
        while fullname in seen:          # two runs with the same test, load and side: keep both
            name, fullname, k = f"{base_name}#{k}", f"{base_full}#{k}", k + 1
        seen.add(fullname)
        benchmarks.append(_entry(fig, name, fullname, stats, estimated))
    if not benchmarks:
        raise ExportError(f"{results.path}: no figure to export" + (f" ({'; '.join(skipped[:3])})" if skipped else ""))
    sha = commit or results.commit
    return {
        "machine_info": {"node": "", **machine_fields(results.fingerprint), "fingerprint": results.fingerprint},
        "commit_info": {"id": sha or "unversioned", "dirty": None, "project": "pytest-disagg",
                        "source": commit_source if sha else None},
        "benchmarks": benchmarks,
        "datetime": results.created,
        "version": FORMAT_VERSION,
        "pytest_disagg": {"results": results.path, "skipped": skipped},
    }, skipped


def _entry(fig: Figure, name: str, fullname: str, stats: dict, estimated: list[str]) -> dict:
    shown, scale, unit, how = transform(fig.metric)
    run = fig.run
    params = {"deployment": fig.deployment, "load": fig.load or None, "metric": fig.metric.name}
    if fig.side:
        params["side"] = fig.side
    extra = {
        "metric": fig.metric.name, "unit": unit, "metric_unit": fig.metric.unit, "direction": fig.metric.direction,
        "transform": how, "scale": scale, "source": fig.kind, "benchmark": fig.benchmark, "test": fig.test,
        **{k: run.get(k) for k in ("setup", "medium", "prefix_caching", "device", "gate", "workload_hash", "valid",
                                   "invalid_reasons", "warmup") if k in run},
    }
    if estimated:
        extra["estimated"] = estimated
    return {
        "group": f"{fig.benchmark}::{shown}" if fig.benchmark else shown,
        "name": name, "fullname": fullname,
        "params": params, "param": "-".join(str(p) for p in (fig.deployment, fig.load, fig.side) if p),
        "extra_info": extra,
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": stats["rounds"],
                    "max_time": float(run.get("wall_s") or 0.0), "warmup": bool(run.get("warmup", (run.get("workload") or {}).get("warmup")))},
        "stats": stats,
    }


def names(doc: dict) -> Iterable[str]:
    return (b["name"] for b in doc["benchmarks"])


__all__ = ["FORMAT_VERSION", "document", "entry_names", "figure_stats", "names", "reciprocal_unit", "short_name", "transform"]
