"""The A/B section's figure: per metric, every round's B/A and the verdict's interval.

Why: the A/B table gives one ratio, its interval and a word per metric; what it cannot show is
why a verdict is ``undecided`` — whether the rounds scatter widely (noise: more rounds would
help) or agree on a change too small to call. One point per round (B's figure over A's, the
figure ``ab.decide`` tests), the Hodges-Lehmann B/A with its interval, and the ``same`` band
around 1 show it at a glance.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .plots import Context, Plot, _title
from .runs import RunView, metric_label
from .style import new_figure, save

VERDICT_COLOURS = {"regressed": "#C0392B", "improved": "#1E8449", "same": "#2471A3", "undecided": "#7F8C8D"}


def round_ratios(pair: Mapping[str, Any], runs: Sequence[RunView]) -> list[float]:
    """B/A of each round's figure (the median of the run's samples, or the run's scalar), rounds
    paired in order as ``ab.decide`` pairs them."""
    by_index = {r.index: r for r in runs}
    out = []
    for a, b in zip(pair.get("a_runs") or [], pair.get("b_runs") or []):
        ra, rb = by_index.get(a), by_index.get(b)
        fa = ra.figure(str(pair["metric"]), "p50") if ra else None
        fb = rb.figure(str(pair["metric"]), "p50") if rb else None
        if fa is not None and fb is not None and fa.value > 0:
            out.append(fb.value / fa.value)
    return out


def ab_rounds(pairs: Sequence[Mapping[str, Any]], runs: Sequence[RunView], ctx: Context) -> Plot:
    """One panel per A/B test (name and deployment), one column per metric."""
    plot = Plot("ab", "A/B: per-round B/A and the verdict's interval")
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for p in pairs:
        if isinstance(p, Mapping) and p.get("metric"):
            groups[f"{p.get('name', '?')} on {p.get('deployment', '?')}"].append(p)
    if not groups:
        plot.missing = "the A/B entries name no metric"
        return plot
    width = max(6.0, 1.1 * max(len(v) for v in groups.values()) + 2.5)
    fig = new_figure(width, 3.6 * len(groups) + 1.4)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (name, group) in zip(axes, groups.items()):
        _panel(ax, name, group, runs)
    fig.suptitle(_title("A/B: B/A per round (dots) and the verdict's B/A with its interval (bar); "
                        "shaded: the 'same' band", ctx), fontsize=11)
    handles = [Line2D([], [], marker="o", linestyle="none", color="#555555", alpha=0.6, label="one round"),
               *(Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items())]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    plot.file = "ab_rounds.png"
    save(fig, ctx.out_dir / plot.file)
    return plot


def _panel(ax, name: str, group: Sequence[Mapping[str, Any]], runs: Sequence[RunView]) -> None:
    band = max(float(p.get("tolerance") or 0.0) for p in group)
    if band:
        ax.axhspan(1 - band, 1 + band, color="#2471A3", alpha=0.12, zorder=0)
    ax.axhline(1.0, color="black", linewidth=0.8, zorder=1)
    for i, pair in enumerate(group):
        colour = VERDICT_COLOURS.get(str(pair.get("verdict")), "#7F8C8D")
        ratios = round_ratios(pair, runs)
        jitter = [(k - (len(ratios) - 1) / 2) * 0.025 for k in range(len(ratios))]
        ax.scatter([i - 0.18 + j for j in jitter], ratios, color="#555555", alpha=0.6, s=16, zorder=3)
        ci, ratio = pair.get("ci"), pair.get("ratio")
        if isinstance(ratio, (int, float)) and isinstance(ci, list) and len(ci) == 2:
            ax.errorbar([i + 0.12], [ratio], yerr=[[ratio - ci[0]], [ci[1] - ratio]], fmt="D", color=colour,
                        capsize=5, elinewidth=2.2, markersize=7, zorder=4)
    ax.set_xticks(range(len(group)), [f"{metric_label(str(p['metric'])).split(' (')[0]}\n{p.get('verdict', '?')}"
                                      f" ({p.get('rounds', '?')} rounds)" for p in group], fontsize=8.5)
    ax.set_xlim(-0.6, len(group) - 0.4)
    ax.set_ylabel("B / A")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(name, fontsize=10)


__all__ = ["ab_rounds", "round_ratios"]
