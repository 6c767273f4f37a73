"""How set-ups look in every plot: one colour per set-up, colocated drawn apart (black, dashed).

Why one place: a reader compares the latency, energy, batch and clock plots side by side, and a
set-up must keep its colour across all of them. Set-ups run both with and without prefix
caching keep their colour and differ in line and marker fill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .fit import fit
from .runs import RunView

DPI = 120
MIN_TICK_GAP = 0.07           # of a log axis's span between labelled ticks
# Colour-blind-safe, distinct on white (Okabe-Ito, without black and yellow).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#8B4513", "#7B68EE")
COLOCATED_COLOURS = ("#000000", "#707070", "#404040")
MARKERS = ("o", "^", "D", "v", "P", "X", "<", ">")
COLOCATED_MARKERS = ("s", "h", "p")
COMPONENT_COLOURS = {"gpu": "#4C9A2A", "cpu-package": "#1F5FA8", "cpu-core": "#6C9BD2", "cpu-uncore": "#A4C2E6",
                     "dram": "#E08E0B", "disk": "#8E44AD", "nic": "#7F8C8D"}


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str
    linestyle: str
    filled: bool
    colocated: bool

    def kwargs(self) -> dict:
        return {"color": self.colour, "marker": self.marker, "linestyle": self.linestyle,
                "markerfacecolor": self.colour if self.filled else "white", "markeredgecolor": self.colour,
                "linewidth": 2.2 if self.colocated else 1.6, "markersize": 6.5 if self.colocated else 6,
                "zorder": 4 if self.colocated else 3}


class Styles:
    """Set-up name -> colour and marker, assigned once per report over all its runs."""

    def __init__(self, runs: Iterable[RunView]):
        colocated: dict[str, bool] = {}
        for r in runs:
            colocated.setdefault(r.setup, r.colocated)
        names = sorted(colocated, key=lambda s: (not colocated[s], s))
        self._base: dict[str, tuple[str, str, bool]] = {}
        co = dis = 0
        for name in names:
            if colocated[name]:
                self._base[name] = (COLOCATED_COLOURS[co % 3], COLOCATED_MARKERS[co % 3], True)
                co += 1
            else:
                self._base[name] = (PALETTE[dis % len(PALETTE)], MARKERS[dis % len(MARKERS)], False)
                dis += 1

    def of(self, run: RunView, prefix_variant: bool = False) -> Style:
        colour, marker, colocated = self._base.get(run.setup, ("#999999", "o", run.colocated))
        pc_on = prefix_variant and run.prefix_caching
        linestyle = "--" if colocated else "-"
        if pc_on:
            linestyle = "-."
        return Style(colour, marker, linestyle, filled=not pc_on, colocated=colocated)

    def colour(self, setup: str) -> str:
        return self._base.get(setup, ("#999999", "o", False))[0]


def series_labels(runs: Sequence[RunView]) -> dict[int, str]:
    """Run index -> legend label; prefix caching is named only where a set-up has both in ``runs``."""
    both = {s for s in {r.setup for r in runs}
            if len({r.prefix_caching for r in runs if r.setup == s}) > 1}
    out = {}
    for r in runs:
        named = "colocated" in r.setup or r.setup.startswith("co-")
        label = r.setup + (" (colocated)" if r.colocated and not named else "")
        if r.setup in both:
            label += ", prefix cache " + ("on" if r.prefix_caching else "off")
        out[r.index] = label
    return out


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg without pyplot: no global state, no backend switch in the caller."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path) -> None:
    """Write the PNG once every title and legend fits the canvas (``fit``)."""
    fit(fig)
    fig.savefig(path, dpi=DPI, facecolor="white")


def tick_text(v: float) -> str:
    return f"{v:g}"


def plain_log_axis(ax: Axes, axis: str, ticks: Sequence[float], base: int = 10) -> None:
    """A log axis whose ticks are the measured values, written plainly (2, 4, 8 — not 2^1), thinned
    so that neighbours at least ``MIN_TICK_GAP`` of the axis apart never overlap."""
    getattr(ax, f"set_{axis}scale")("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    values = sorted({t for t in ticks if t > 0})
    if values:
        span = math.log(values[-1] / values[0]) or 1.0
        kept = [values[0]]
        for v in values[1:]:
            if math.log(v / kept[-1]) / span >= MIN_TICK_GAP:
                kept.append(v)
        if kept[-1] != values[-1] and math.log(values[-1] / kept[-1]) / span < MIN_TICK_GAP and len(kept) > 1:
            kept[-1] = values[-1]     # the largest value is the one a reader looks for
        elif kept[-1] != values[-1]:
            kept.append(values[-1])
        target.set_ticks(kept)
    target.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    target.set_minor_formatter(NullFormatter())


def wants_log(values: Iterable[float], ratio: float = 12.0) -> bool:
    vals = [v for v in values if v is not None and v > 0]
    return bool(vals) and max(vals) / min(vals) >= ratio


def yerr(estimates) -> tuple[list[float], list[float]] | None:
    """Asymmetric error bars from CIs; None when no estimate has one."""
    if not any(e.has_ci for e in estimates):
        return None
    lo = [max(0.0, e.value - e.low) if e.has_ci else 0.0 for e in estimates]
    hi = [max(0.0, e.high - e.value) if e.has_ci else 0.0 for e in estimates]
    return lo, hi


__all__ = ["COMPONENT_COLOURS", "DPI", "Style", "Styles", "new_figure", "plain_log_axis", "save", "series_labels",
           "tick_text", "wants_log", "yerr"]
