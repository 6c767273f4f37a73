"""The report's PNGs: each function draws one figure from run views, or says why it cannot.

Every function returns a :class:`Plot`: the file it wrote (under the output directory) plus
notes for the page, or ``missing`` with the reason when the data for it is not in the results.
Figures are drawn with the Agg canvas directly (``matplotlib.figure.Figure``), never pyplot, so
building a report changes no global matplotlib state in the caller's process.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Sequence

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..energy.attribution import components
from ..energy.pareto import ParetoPoint, pareto
from .runs import Estimate, RunView, fmt_number, metric_label
from .style import (COMPONENT_COLOURS, Styles, new_figure, plain_log_axis, save, series_labels, tick_text,
                    wants_log, yerr)

LATENCY_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms")
PARETO_METRICS = ("ttft_ms", "tpot_ms")
# Components that contain others (RAPL psys, the whole node) or sit inside the package: drawn
# as a marker or left out, never stacked with the disjoint ones (as presets.energy_per_component).
CONTAINER_COMPONENTS = ("node", "platform")
INSIDE_PACKAGE = ("cpu-core", "cpu-uncore")


@dataclass
class Plot:
    key: str
    title: str
    file: str | None = None
    notes: list[str] = field(default_factory=list)
    missing: str | None = None


@dataclass(frozen=True)
class Context:
    out_dir: Path
    where: str                 # "llama-3.2-3b-shape on 2x NVIDIA A100 (vLLM 0.11.0)"
    styles: Styles


def _title(what: str, ctx: Context) -> str:
    return f"{what}\n{ctx.where}"


def _group(runs: Iterable[RunView], x_of: Callable[[RunView], float | None]) -> dict[str, list[tuple[float, RunView]]]:
    """Legend label -> [(x, run)] sorted by x, set-ups in the report's order (colocated first)."""
    runs = [r for r in runs if x_of(r) is not None]
    labels = series_labels(runs)
    out: dict[str, list[tuple[float, RunView]]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: (not r.colocated, r.setup, bool(r.prefix_caching))):
        out[labels[r.index]].append((x_of(r), r))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def _draw_series(ax, series: Mapping[str, list[tuple[float, RunView]]], value: Callable[[RunView], Estimate | None],
                 ctx: Context, handles: dict) -> list[float]:
    """One line per series with CI error bars through its valid runs; invalid runs
    (``pytest_disagg.validity``: they measured the machine) keep their marker, crossed out, and the
    line does not pass through them. Returns every y drawn."""
    ys_all = []
    for label, points in series.items():
        pts = [(x, value(r), r.raw.get("valid") is not False) for x, r in points]
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        style = ctx.styles.of(points[0][1], prefix_variant=True).kwargs()
        for valid in (True, False):
            xs, es = [x for x, _, v in pts if v is valid], [e for _, e, v in pts if v is valid]
            if not xs:
                continue
            err = yerr(es)
            drawn = ax.errorbar(xs, [e.value for e in es], yerr=err, capsize=3 if err else 0, elinewidth=1.1,
                                **(style if valid else {**style, "linestyle": "none"}))
            handles.setdefault(label, drawn.lines[0])
            ys_all += [e.value for e in es] + [e.high for e in es if e.has_ci]
            if not valid:   # drawn, crossed out, never gated
                marker = ax.scatter(xs, [e.value for e in es], marker="x", s=110, linewidths=2.2, color="#d62728",
                                    zorder=6)
                handles.setdefault("invalid run (crossed out, not joined, not gated)", marker)
    return ys_all


def _legend(fig, handles: dict, extra: Sequence[tuple[Any, str]] = (), ncols: int | None = None) -> None:
    items = list(handles.items()) + [(label, h) for h, label in extra]
    if not items:
        return
    labels, hs = [i[0] for i in items], [i[1] for i in items]
    fig.legend(hs, labels, loc="outside lower center", ncols=ncols or min(len(hs), 5), fontsize=9, frameon=False)


def _rate_axis(ax, runs: Sequence[RunView]) -> None:
    xs = [r.rate for r in runs if r.rate is not None]
    if wants_log(xs, 16.0):
        plain_log_axis(ax, "x", xs, base=2)
    else:
        ax.set_xlim(0, max(xs) * 1.05 if xs else None)
    kinds = sorted({r.arrival_kind for r in runs if r.arrival_kind})
    names = {"poisson": "Poisson", "gamma": "gamma", "constant": "constant-interval"}
    ax.set_xlabel("request rate (req/s" + (f", {'/'.join(names.get(k, k) for k in kinds)} arrivals)" if kinds else ")"))
    ax.grid(True, alpha=0.3)


def _y_axis(ax, ys: Sequence[float], label: str) -> None:
    ax.set_ylabel(label)
    if wants_log(ys, 20.0):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(lambda v, _: fmt_number(v))
        # Under two decades, label the 2s and 5s between the powers of ten, plainly (not "6x10^0").
        narrow = max(v for v in ys if v > 0) / min(v for v in ys if v > 0) < 100
        ax.yaxis.set_minor_formatter(lambda v, _: f"{v:,g}" if narrow and f"{v:g}"[0] in "25" else "")
    else:
        ax.set_ylim(bottom=0)


# --- 1. latency vs request rate ---------------------------------------------------------------

def latency_vs_rate(runs: Sequence[RunView], crossover: Mapping[str, Any] | None, ctx: Context,
                    benchmark: str) -> Plot:
    plot = Plot("latency", f"Latency vs request rate ({benchmark})")
    rate_runs = [r for r in runs if r.sweep_kind == "rate" and r.benchmark == benchmark]
    series = _group(rate_runs, lambda r: r.rate)
    metrics = [m for m in LATENCY_METRICS if any(r.stat(m) for r in rate_runs)]
    if not metrics or not series:
        plot.missing = f"benchmark {benchmark!r} has no latency summaries at a request rate"
        return plot
    fig = new_figure(5.2 * len(metrics), 5.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    handles: dict = {}
    marks = _crossover_marks(crossover, rate_runs, ctx)
    for ax, metric in zip(axes, metrics):
        ys = _draw_series(ax, series, lambda r, m=metric: r.stat(m), ctx, handles)
        mine = [m for m in marks if m["metric"] == metric or m["metric"] not in metrics]
        lines = []
        for mark in mine:
            lines.append(ax.axvline(mark["rate"], color=mark["colour"], linestyle=":", linewidth=2.2, zorder=2,
                                    label=mark["legend"]))
            if mark["low"] is not None and mark["high"] is not None:
                ax.axvspan(mark["low"], mark["high"], color=mark["colour"], alpha=0.10, zorder=1)
        _rate_axis(ax, rate_runs)
        _y_axis(ax, ys, metric_label(metric, "p50"))
        ax.set_title(metric_label(metric, "p50").split(" (")[0] + " (median, 95 % bootstrap CI)", fontsize=10)
        if lines:
            ax.legend(handles=lines, loc="upper left", fontsize=8, title="crossover (band: 95 % CI)",
                      title_fontsize=8, framealpha=0.9)
    fig.suptitle(_title("Latency vs request rate per set-up — colocated dashed, crossover rates dotted", ctx),
                 fontsize=11)
    _legend(fig, handles, ncols=min(len(handles), 6))
    plot.file = f"latency_vs_rate{'' if benchmark == 'latency' else '-' + benchmark}.png"
    save(fig, ctx.out_dir / plot.file)
    if not marks:
        if all(r.colocated for r in rate_runs):
            why = "only colocated set-ups ran, so there is nothing for disaggregation to cross over."
        elif not crossover:
            why = "the results hold no `derived.crossover`."
        else:
            why = "no medium's crossover fell inside the measured rates."
        plot.notes.append("No crossover rate is marked: " + why)
    return plot


def _crossover_marks(crossover: Mapping[str, Any] | None, runs: Sequence[RunView], ctx: Context) -> list[dict]:
    marks = []
    for medium, entry in sorted((crossover or {}).items()):
        if not isinstance(entry, Mapping) or not _finite(entry.get("rate")):
            continue
        setups = sorted({r.setup for r in runs if r.medium == medium or r.setup == medium})
        setup = setups[0] if setups else medium
        low, high = entry.get("ci_low"), entry.get("ci_high")
        ci = f" [{fmt_number(low)}, {fmt_number(high)}]" if _finite(low) and _finite(high) else ""
        metric = str(entry.get("metric") or "")
        marks.append({"setup": setup, "metric": metric, "rate": float(entry["rate"]),
                      "low": float(low) if _finite(low) else None, "high": float(high) if _finite(high) else None,
                      "colour": ctx.styles.colour(setup),
                      "legend": f"{setup}: {fmt_number(entry['rate'])} req/s{ci}"})
    return marks


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --- 2. energy per token ----------------------------------------------------------------------

def energy_per_token(runs: Sequence[RunView], ctx: Context) -> Plot:
    """J/token vs request rate and/or vs batch; each panel one benchmark (one workload), preferring
    the energy benchmark, so that runs of different workloads are never joined by a line."""
    plot = Plot("energy", "Energy per token")
    with_energy = [r for r in runs if r.sweep_kind in ("rate", "batch") and r.energy_per_token() is not None]
    if not with_energy:
        plot.missing = "no run outside the clock grid carries an energy figure"
        return plot
    panels = []
    for kind in ("rate", "batch"):
        rs = [r for r in with_energy if r.sweep_kind == kind]
        if not rs:
            continue
        counts = Counter(r.benchmark for r in rs)
        bench = "energy" if "energy" in counts else max(sorted(counts), key=lambda b: counts[b])
        panels.append((kind, bench, [r for r in rs if r.benchmark == bench]))
        others = sorted(set(counts) - {bench})
        if others:
            plot.notes.append(f"Energy per token vs {kind}: benchmark `{bench}` is drawn; "
                              f"{', '.join(f'`{b}`' for b in others)} also measured energy (see its table).")
    fig = new_figure(6.2 * len(panels), 5.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict = {}
    for ax, (kind, bench, rs) in zip(axes, panels):
        x_of = (lambda r: r.rate) if kind == "rate" else (lambda r: r.batch)
        series = _group(rs, x_of)
        ys = _draw_series(ax, series, lambda r: r.energy_per_token(), ctx, handles)
        if kind == "rate":
            _rate_axis(ax, rs)
        else:
            _batch_axis(ax, [x for pts in series.values() for x, _ in pts])
        _y_axis(ax, ys, "energy per token (J/token, prompt + output)")
        ax.set_title(f"vs {'request rate' if kind == 'rate' else 'batch'} — benchmark {bench}", fontsize=10)
    components = sorted({c for r in with_energy for c in _total_components(r)})
    fig.suptitle(_title("Energy per token per set-up — all measured components"
                        + (f" ({', '.join(components)})" if components else "")
                        + "; error bars: 95 % CI where measured", ctx), fontsize=11)
    _legend(fig, handles)
    plot.file = "energy_per_token.png"
    save(fig, ctx.out_dir / plot.file)
    if not any(r.energy_per_token().has_ci for _, _, rs in panels for r in rs):
        plot.notes.append("No energy figure carries a confidence interval (one measured window per point).")
    return plot


def _total_components(run: RunView) -> list[str]:
    comps = run.energy.get("total_components")
    return [str(c) for c in comps] if isinstance(comps, list) else []


def _batch_axis(ax, xs: Sequence[float]) -> None:
    if wants_log(xs, 4.0):
        plain_log_axis(ax, "x", xs, base=2)
    ax.set_xlabel("batch (requests sent at once, rate inf)")
    ax.grid(True, alpha=0.3)


def components_of(run: RunView) -> dict[str, dict] | None:
    """Per-component J/token and share: the energy record's ``components``
    (``Attribution.record()``; older files' spellings are mapped by ``results.upgrade``), else
    computed from the attribution's GPU and host figures the same way."""
    e = run.energy
    if isinstance(e.get("components"), Mapping) and e["components"]:
        return {str(k): dict(v) for k, v in e["components"].items() if isinstance(v, Mapping)}
    host = e.get("host")
    if not isinstance(host, list) or not host or not _finite(e.get("gpu_joules")):
        return None
    figures = [SimpleNamespace(component=str(h.get("component")), joules=h.get("joules"),
                               unavailable=h.get("unavailable") or "not measured")
               for h in host if isinstance(h, Mapping)]
    att = SimpleNamespace(prompt_tokens=int(e.get("prompt_tokens") or 0), output_tokens=int(e.get("output_tokens") or 0),
                          gpu_joules=float(e["gpu_joules"]), host=figures)
    return components(att)


def energy_by_component(runs: Sequence[RunView], ctx: Context, benchmark: str) -> Plot:
    plot = Plot("components", f"Energy per token by component ({benchmark})")
    rows = [(r, components_of(r)) for r in runs if r.benchmark == benchmark and r.sweep_kind != "dvfs"]
    rows = [(r, c) for r, c in rows if c and any(_finite(v.get("j_per_token")) for v in c.values())]
    if not rows:
        plot.missing = f"benchmark {benchmark!r}: no run has energy beyond the GPU total"
        return plot
    labels = series_labels([r for r, _ in rows])
    ordered = sorted(rows, key=lambda rc: (not rc[0].colocated, rc[0].setup, _load_order(rc[0]), labels[rc[0].index]))
    panels: dict[str, list] = defaultdict(list)
    for r, comps in ordered:
        panels[labels[r.index]].append((r, comps))
    single = all(len(items) == 1 for items in panels.values())
    if single:        # one load per set-up: one panel, a bar per set-up
        panels = {"": ordered}
    stacked = [c for c in dict.fromkeys(c for _, comps in rows for c in comps)
               if c not in CONTAINER_COMPONENTS and c not in INSIDE_PACKAGE]
    containers = [c for c in dict.fromkeys(c for _, comps in rows for c in comps) if c in CONTAINER_COMPONENTS]
    n = len(panels)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    width = max(6.5, 1.3 * len(ordered) + 2) if single else 4.6 * cols
    fig = new_figure(width, 3.9 * nrows + 0.9 + (0.5 if single else 0))
    axes = fig.subplots(nrows, cols, squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    unavailable: dict[str, set] = defaultdict(set)
    drawn_containers: set[str] = set()
    for ax, (label, items) in zip(axes.flat, panels.items()):
        xs = list(range(len(items)))
        bottom = [0.0] * len(items)
        for comp in stacked:
            heights = [float(c.get(comp, {}).get("j_per_token") or 0.0) for _, c in items]
            ax.bar(xs, heights, bottom=bottom, color=COMPONENT_COLOURS.get(comp, "#999999"), width=0.7,
                   edgecolor="white", linewidth=0.5)
            bottom = [b + h for b, h in zip(bottom, heights)]
        for comp in containers:
            ys = [c.get(comp, {}).get("j_per_token") for _, c in items]
            pts = [(x, y) for x, y in zip(xs, ys) if _finite(y)]
            if pts:
                drawn_containers.add(comp)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none", marker="_", markersize=22,
                        markeredgewidth=2.5, color="black")
        for (r, c), x, top in zip(items, xs, bottom):
            host = sum(float(v.get("share") or 0) for k, v in c.items() if k != "gpu" and k in stacked)
            if top > 0 and host > 0:
                ax.annotate(f"host {host:.0%}", (x, top), xytext=(0, 2), textcoords="offset points", ha="center",
                            fontsize=7.5, color="#333333")
            for comp, v in c.items():
                if "unavailable" in v:
                    unavailable[comp].add(str(v["unavailable"]))
        if single:
            names = [labels[r.index].replace(", ", "\n") for r, _ in items]
            ax.set_xticks(xs, names, fontsize=8.5)
            for tick, (r, _) in zip(ax.get_xticklabels(), items):
                tick.set_color(ctx.styles.colour(r.setup))
            loads = sorted({_short_load(r) for r, _ in items})
            ax.set_xlabel(f"set-up ({_load_axis_label([r for r, _ in items])}: {', '.join(loads)})", fontsize=9)
        else:
            ax.set_xticks(xs, [_short_load(r) for r, _ in items], fontsize=8.5,
                          rotation=0 if len(items) <= 6 else 45)
            ax.set_title(label, fontsize=10, color=ctx.styles.colour(items[0][0].setup), fontweight="bold")
            ax.set_xlabel(_load_axis_label([r for r, _ in items]), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("energy per token (J/token)")
    measured = {c for _, comps in rows for c, v in comps.items() if _finite(v.get("j_per_token")) and v["j_per_token"] > 0}
    handles = [Patch(color=COMPONENT_COLOURS.get(c, "#999999"), label=c if c in measured else f"{c}: n/a (not measured)")
               for c in stacked]
    handles += [Line2D([], [], linestyle="none", marker="_", markersize=16, markeredgewidth=2.5, color="black",
                       label=f"{c} (contains the others; not stacked)") for c in containers if c in drawn_containers]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    fig.suptitle(_title(f"Energy per token by component — benchmark {benchmark}; "
                        "'host' = share of CPU and memory in the measured total", ctx), fontsize=11)
    plot.file = f"energy_by_component-{benchmark}.png"
    save(fig, ctx.out_dir / plot.file)
    for comp, reasons in sorted(unavailable.items()):
        plot.notes.append(f"Component `{comp}` was not measured: {'; '.join(sorted(reasons))}.")
    return plot


def _load_order(r: RunView) -> tuple:
    return (r.batch if r.batch is not None else math.inf, r.rate if r.rate is not None else math.inf,
            bool(r.prefix_caching), r.load)


def _short_load(r: RunView) -> str:
    if r.batch is not None:
        return str(r.batch)
    if r.rate is not None:
        return f"{tick_text(r.rate)}/s"
    return r.load or "-"


def _load_axis_label(runs: Sequence[RunView]) -> str:
    if all(r.batch is not None for r in runs):
        return "batch (requests at once)"
    if all(r.rate is not None for r in runs):
        return "request rate (req/s)"
    return "load"


# --- 3. latency-energy Pareto frontier over clocks --------------------------------------------

def pareto_clocks(runs: Sequence[RunView], ctx: Context) -> Plot:
    plot = Plot("pareto", "Latency–energy trade-off over stage clocks")
    clocked = [r for r in runs if r.clocks is not None]
    if not clocked:
        plot.missing = "no dvfs runs (none carries prefill/decode clocks in its `extra`)"
        return plot
    usable = [r for r in clocked if r.energy_per_token() is not None]
    if not usable:
        reasons = sorted({r.energy_unavailable() for r in clocked if r.energy_unavailable()})
        plot.missing = (f"{len(clocked)} dvfs runs, but none carries an energy figure"
                        + (f" ({'; '.join(reasons)})" if reasons else ""))
        return plot
    metrics = [m for m in PARETO_METRICS if any(r.stat(m) for r in usable)]
    if not metrics:
        plot.missing = "the dvfs runs have no latency summaries"
        return plot
    dry = [r for r in usable if r.clocks.dry_run is not False]
    fig = new_figure(6.4 * len(metrics), 6.2)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    labels = series_labels(usable)
    handles: dict = {}
    for ax, metric in zip(axes, metrics):
        texts, obstacles = [], []
        for label in dict.fromkeys(labels[r.index] for r in sorted(usable, key=lambda r: (not r.colocated, r.setup))):
            group = [r for r in usable if labels[r.index] == label and r.stat(metric)]
            if not group:
                continue
            style = ctx.styles.of(group[0]).kwargs()
            points = [ParetoPoint(f"{r.index}", r.stat(metric).value, r.energy_per_token().value) for r in group]
            front = set(pareto(points, latency_metric=metric, energy_metric="energy_j_per_token").frontier)
            on = sorted([r for r in group if str(r.index) in front], key=lambda r: r.stat(metric).value)
            off = [r for r in group if str(r.index) not in front]
            ax.scatter([r.stat(metric).value for r in off], [r.energy_per_token().value for r in off],
                       color=style["color"], marker=style["marker"], s=30, alpha=0.35, zorder=2)
            line = ax.plot([r.stat(metric).value for r in on], [r.energy_per_token().value for r in on],
                           color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                           markersize=7, linewidth=1.8, zorder=3)[0]
            handles.setdefault(f"{label}: frontier", line)
            texts += [(r.stat(metric).value, r.energy_per_token().value, r.clocks.label(), style["color"]) for r in on]
            obstacles += [(r.stat(metric).value, r.energy_per_token().value) for r in group]
        ax.set_xlabel(metric_label(metric, "p50"))
        ax.set_ylabel("energy per token (J/token)")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{metric_label(metric).split(' (')[0]} p50 vs energy — lower left is better", fontsize=10)
        _place_labels(ax, fig, texts, obstacles)
        if dry:
            ax.text(0.5, 0.5, "DRY RUN\nclocks not changed", transform=ax.transAxes, ha="center", va="center",
                    fontsize=30, color="#C0392B", alpha=0.15, rotation=20, fontweight="bold", zorder=0)
    faint = Line2D([], [], color="#777777", marker="o", linestyle="none", alpha=0.35)
    axes[0].legend(list(handles.values()) + [faint], list(handles) + ["dominated clock pairs"], loc="best",
                   fontsize=8.5, framealpha=0.9)
    head = "Latency–energy Pareto frontier over stage clocks (labels: clock of both GPUs, or P = prefill / D = decode)"
    fig.suptitle(_title(head, ctx), fontsize=11)
    if dry:
        warning = (f"DRY RUN: the GPU clocks were NOT changed for {len(dry)} of {len(usable)} points — "
                   "they ran at the default clocks; differences between them are noise")
        fig.supxlabel(warning, color="#C0392B", fontsize=11, fontweight="bold")
        plot.notes.append(f"**{warning}.** Run with `--disagg-dvfs=apply` on a machine where clocks may be set "
                          "to measure the trade-off.")
    plot.file = "pareto_clocks.png"
    save(fig, ctx.out_dir / plot.file)
    missing = len(clocked) - len(usable)
    if missing:
        plot.notes.append(f"{missing} dvfs run(s) without an energy figure are left out.")
    return plot


def _place_labels(ax, fig, items: Sequence[tuple[float, float, str, str]], obstacles: Sequence[tuple[float, float]] = (),
                  fontsize: float = 7.5) -> None:
    """Annotate points, each label at the first of a few offsets where it covers no label placed
    before it and no marker (boxes estimated from the text length; the axes are linear here)."""
    if not items:
        return
    fig.draw_without_rendering()          # run the layout first: positions below are the final ones
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    pos = ax.get_position()
    width_pt = max(pos.width * fig.get_figwidth() * 72, 1.0)
    height_pt = max(pos.height * fig.get_figheight() * 72, 1.0)

    def to_pt(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0 or 1) * width_pt, (y - y0) / (y1 - y0 or 1) * height_pt

    marker = 4.5
    placed: list[tuple[float, float, float, float]] = [
        (px - marker, py - marker, px + marker, py + marker) for px, py in (to_pt(x, y) for x, y in obstacles)]
    for x, y, text, colour in items:
        px, py = to_pt(x, y)
        w, h = len(text) * fontsize * 0.6, fontsize * 1.3
        candidates = [(dx, dy) for ring in range(5) for dy in ((3 + ring * (h + 2)), (-h - 3 - ring * (h + 2)))
                      for dx in (6, -w - 6, -w / 2)]
        best, best_cost = candidates[0], math.inf
        for dx, dy in candidates:
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            outside = box[0] < 0 or box[2] > width_pt or box[1] < 0 or box[3] > height_pt
            cost = sum(_overlap_area(box, other) for other in placed) + (1e6 if outside else 0.0)
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        dx, dy = best
        placed.append((px + dx, py + dy, px + dx + w, py + dy + h))
        far = abs(dy) > h + 4 or dx == -w / 2
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, color=colour,
                    ha="left", va="bottom", zorder=5,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7},
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6, "alpha": 0.7} if far else None)


def _overlap_area(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# --- 4. history across files ------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryPoint:
    series: str        # legend label
    setup: str         # for the colour
    colocated: bool
    doc: int           # index into the ordered documents
    estimate: Estimate


def history(points: Sequence[HistoryPoint], tick_labels: Sequence[str], metric_text: str, ctx: Context,
            colour_of: Callable[[str], str], change_points: Mapping[str, Sequence[tuple[int, Any]]] | None = None
            ) -> Plot:
    """One line per series across the files; ``change_points`` (per series: x of the first point
    of a new level) are drawn as dotted vertical lines in the series' colour."""
    plot = Plot("history", f"History of {metric_text}")
    if not points:
        plot.missing = "no set-up and load appears in more than one of the files given"
        return plot
    fig = new_figure(max(7.5, 1.9 * len(tick_labels) + 3.5), 5.6)
    ax = fig.subplots()
    handles: dict = {}
    by_series: dict[str, list[HistoryPoint]] = defaultdict(list)
    for p in points:
        by_series[p.series].append(p)
    markers = ("o", "^", "D", "v", "P", "X", "s", "<", ">")
    setups_seen: dict[str, int] = defaultdict(int)
    for series, pts in by_series.items():
        pts.sort(key=lambda p: p.doc)
        k = setups_seen[pts[0].setup]
        setups_seen[pts[0].setup] += 1
        es = [p.estimate for p in pts]
        err = yerr(es)
        c = ax.errorbar([p.doc for p in pts], [e.value for e in es], yerr=err, capsize=3 if err else 0,
                        color=colour_of(pts[0].setup), marker=markers[k % len(markers)],
                        linestyle="--" if pts[0].colocated else "-", linewidth=1.6, markersize=6)
        handles[series] = c.lines[0]
        for slot, _cp in (change_points or {}).get(series, ()):
            ax.axvline(slot - 0.5, color=colour_of(pts[0].setup), linestyle=":", linewidth=1.4, alpha=0.9)
    ax.set_xticks(range(len(tick_labels)), tick_labels, fontsize=8.5)
    ax.set_xlim(-0.4, len(tick_labels) - 0.6)
    ax.set_xlabel("results file, oldest first (created · vLLM · driver)")
    ys = [p.estimate.value for p in points]
    _y_axis(ax, ys, metric_text)
    ax.grid(True, alpha=0.3)
    fig.suptitle(_title(f"{metric_text.split(' (')[0]} across software versions, per set-up and load "
                        "(error bars: 95 % CI where stored)", ctx), fontsize=11)
    _legend(fig, handles, ncols=min(3, len(handles)))
    plot.file = "history.png"
    save(fig, ctx.out_dir / plot.file)
    return plot


# --- 5. batch sweep ---------------------------------------------------------------------------

BATCH_PANELS = (("ttft_ms", "TTFT p50 (ms)"), ("tpot_ms", "TPOT p50 (ms)"),
                ("prompt_throughput", "prefill throughput (prompt tok/s)"),
                ("output_throughput", "decode throughput (output tok/s)"))


def batch_sweep(runs: Sequence[RunView], ctx: Context) -> Plot:
    plot = Plot("batch", "Batch sweep")
    batch_runs = [r for r in runs if r.sweep_kind == "batch"]
    if not batch_runs:
        plot.missing = "no run sends a batch at once (rate inf, load `batch=N`)"
        return plot
    series = _group(batch_runs, lambda r: r.batch)
    fig = new_figure(12.5, 9.6)
    axes = fig.subplots(2, 2).flat
    handles: dict = {}
    xs = [x for pts in series.values() for x, _ in pts]
    for ax, (metric, label) in zip(axes, BATCH_PANELS):
        ys = _draw_series(ax, series, lambda r, m=metric: r.figure(m, "p50"), ctx, handles)
        _batch_axis(ax, xs)
        _y_axis(ax, ys, label)
        ax.set_title(label.split(" (")[0] + (" (median, 95 % CI)" if metric.endswith("_ms") else ""), fontsize=10)
    benchmarks = sorted({r.benchmark for r in batch_runs})
    fig.suptitle(_title(f"Batch sweep (benchmark {', '.join(benchmarks)}): all requests of a batch sent at once", ctx),
                 fontsize=11)
    _legend(fig, handles)
    plot.file = "batch_sweep.png"
    save(fig, ctx.out_dir / plot.file)
    recorded = any(r.scalar("prompt_throughput") is not None for r in batch_runs)
    plot.notes.append("Throughputs are per second of the whole measured phase (first send to last answer): decode = "
                      "output tokens/s; prefill = prompt tokens/s"
                      + ("." if recorded else " (total token − output token throughput: no run recorded "
                                              "`prompt_throughput`)."))
    return plot


# --- extra: KV reuse ---------------------------------------------------------------------------

def kv_reuse(runs: Sequence[RunView], ctx: Context, benchmark: str = "kv_reuse") -> Plot:
    plot = Plot("kv_reuse", "KV reuse: prefix caching on vs off")
    rs = [r for r in runs if r.benchmark == benchmark and r.prefix_caching is not None and r.stat("ttft_ms")]
    setups = [s for s in dict.fromkeys(r.setup for r in sorted(rs, key=lambda r: (not r.colocated, r.setup)))
              if len({r.prefix_caching for r in rs if r.setup == s}) == 2]
    if not setups:
        plot.missing = f"no set-up of benchmark {benchmark!r} ran with prefix caching both on and off"
        return plot
    figures: list[tuple[str, Callable[[RunView], Estimate | None]]] = [
        ("TTFT p50 (ms)", lambda r: r.stat("ttft_ms")),
        ("energy per token (J/token)", lambda r: r.energy_per_token()),
        ("prefix-cache hit rate (%)",
         lambda r: None if r.prefix_hit_rate() is None else Estimate(100 * r.prefix_hit_rate())),
        ("KV moved between servers (MiB)",
         lambda r: None if r.server_figure("kv_bytes") is None else Estimate(r.server_figure("kv_bytes") / 2 ** 20)),
    ]
    panels = [(label, f) for label, f in figures if any(f(r) is not None for r in rs)]
    cols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / cols)
    fig = new_figure(max(5.5, 1.5 * len(setups) + 2.5) * cols, 4.6 * nrows + 0.6)
    axes = list(fig.subplots(nrows, cols, squeeze=False).flat)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (label, value) in zip(axes, panels):
        _kv_panel(ax, label, setups, {(s, pc): value(next(r for r in rs if r.setup == s and r.prefix_caching is pc))
                                      for s in setups for pc in (False, True)}, ctx)
    fig.suptitle(_title(f"KV reuse (benchmark {benchmark}): the same shared-prefix workload with prefix caching "
                        "off (hatched) and on (solid)", ctx), fontsize=11)
    fig.legend(handles=[Patch(facecolor="#bbbbbb", hatch="//", edgecolor="black", label="prefix caching off"),
                        Patch(facecolor="#555555", edgecolor="black", label="prefix caching on")],
               loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    plot.file = f"kv_reuse{'' if benchmark == 'kv_reuse' else '-' + benchmark}.png"
    save(fig, ctx.out_dir / plot.file)
    return plot


def _kv_panel(ax, label: str, setups: Sequence[str], values: Mapping[tuple[str, bool], Estimate | None],
              ctx: Context) -> None:
    """A pair of bars per set-up, centred on its label: caching off (hatched) left, on right; a
    slot with no figure says "n/a" (e.g. no KV moves in colocated serving, or disk's connector
    reports no byte count) instead of leaving a gap that reads as zero."""
    width = 0.38
    for j, pc in enumerate((False, True)):
        xs = [i + (j - 0.5) * width for i in range(len(setups))]
        shown = [(x, values[(s, pc)], s) for x, s in zip(xs, setups) if values[(s, pc)] is not None]
        for x, s in zip(xs, setups):
            if values[(s, pc)] is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=8, color="#555555",
                        transform=ax.get_xaxis_transform())
        if not shown:
            continue
        err = yerr([e for _, e, _ in shown])
        bars = ax.bar([x for x, _, _ in shown], [e.value for _, e, _ in shown], width=width * 0.95, yerr=err,
                      capsize=3 if err else 0, color=[ctx.styles.colour(s) for _, _, s in shown],
                      alpha=1.0 if pc else 0.45, hatch=None if pc else "//", edgecolor="black", linewidth=0.6)
        if err is None:
            ax.bar_label(bars, labels=[fmt_number(e.value) for _, e, _ in shown], fontsize=8, padding=2)
    ax.set_xticks(range(len(setups)), setups)
    ax.set_xlim(-0.6, len(setups) - 0.4)
    ax.set_ylim(bottom=0)
    ax.margins(y=0.12)
    ax.set_ylabel(label)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(label.split(" (")[0], fontsize=10)


__all__ = ["Context", "HistoryPoint", "Plot", "batch_sweep", "components_of", "energy_by_component",
           "energy_per_token", "history", "kv_reuse", "latency_vs_rate", "pareto_clocks"]
