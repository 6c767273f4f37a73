"""Where a medium's TTFT goes: prefill, KV hand-off, decode's first token, the rest.

Why: the latency plot shows that a disaggregated set-up's TTFT is 10x colocated's on a small box
(nixl-cpu ~160 ms against ~13 ms for 192-token prompts in docs/example-report) but not which stage
pays for it. The proxy stamps every request's stages (``prefill_ms``: arrival to prefill's answer,
``handoff_ms``: to the decode request, ``decode_ttft_ms``: to decode's first byte), and the runs
keep them as per-request samples; what is left of the client's TTFT is the proxy and the client.
Each bar is the run's TTFT p50, split in the shares of the run's summed TTFT that each stage took.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.patches import Patch

from .plots import Context, Plot, _title
from .runs import RunView, fmt_number
from .style import new_figure, save

# (sample name, legend text, colour); None: the client's TTFT less the proxy's stages.
STAGES = (("prefill_ms", "prefill (proxy: arrival to prefill's answer)", "#1F5FA8"),
          ("handoff_ms", "KV hand-off (prefill's answer to the decode request)", "#E08E0B"),
          ("decode_ttft_ms", "decode: first token (decode request to its first byte)", "#4C9A2A"),
          (None, "proxy and client (the rest of the client's TTFT)", "#B0B0B0"))


def stage_split(run: RunView) -> dict[str, float] | None:
    """The run's TTFT p50 split in ms by the share of the run's total TTFT time each stage took
    (a stage the set-up has not, e.g. colocated's prefill, is left out); None when the run kept no
    per-request stage samples. Shares, not per-stage medians: medians of parts do not add up to
    the median of their sum, and a stack that does not reach its own total misleads."""
    ttft, p50 = run.samples("ttft_ms"), run.stat("ttft_ms")
    parts = {name: run.samples(name) for name, _, _ in STAGES if name}
    parts = {k: float(np.sum(v)) for k, v in parts.items() if v is not None and len(v) == len(ttft or ())}
    if not ttft or not parts or p50 is None or sum(ttft) <= 0:
        return None
    parts["rest"] = max(0.0, float(np.sum(ttft)) - sum(parts.values()))
    total = sum(parts.values())
    return {k: p50.value * v / total for k, v in parts.items()}


def _rows(runs: Sequence[RunView], benchmark: str) -> dict[str, list[tuple[RunView, dict[str, float]]]]:
    by_setup: dict[str, list] = {}
    for r in sorted((r for r in runs if r.benchmark == benchmark and r.sweep_kind == "rate"),
                    key=lambda r: (not r.colocated, r.setup, r.rate)):
        stages = stage_split(r)
        if stages is not None:
            by_setup.setdefault(r.setup, []).append((r, stages))
    return by_setup


def ttft_split(runs: Sequence[RunView], ctx: Context, benchmark: str) -> Plot:
    """One panel per set-up (its own y scale), a stacked bar per request rate."""
    plot = Plot("ttft_split", f"Where TTFT goes, per set-up and rate ({benchmark})")
    rows = _rows(runs, benchmark)
    if not rows:
        plot.missing = f"benchmark {benchmark!r}: no run kept the proxy's per-request stage times"
        return plot
    cols = min(len(rows), 2)
    nrows = math.ceil(len(rows) / cols)
    fig = new_figure(max(5.0, 0.5 * max(len(v) for v in rows.values()) + 1.8) * cols, 3.9 * nrows + 1.5)
    axes = list(fig.subplots(nrows, cols, squeeze=False).flat)
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    for ax, (setup, items) in zip(axes, rows.items()):
        _panel(ax, setup, items)
    fig.suptitle(_title("Where TTFT goes: each run's TTFT p50 split by the share of its requests' time in each "
                        "stage (proxy stamps), per set-up and request rate; faded bars: invalid runs", ctx), fontsize=11)
    fig.legend(handles=[Patch(color=c, label=t) for _, t, c in STAGES], loc="outside lower center", ncols=2,
               fontsize=9, frameon=False)
    plot.file = f"ttft_split{'' if benchmark == 'latency' else '-' + benchmark}.png"
    save(fig, ctx.out_dir / plot.file)
    plot.notes.append(_note(rows))
    return plot


def _panel(ax, setup: str, items: Sequence[tuple[RunView, dict[str, float]]]) -> None:
    xs = list(range(len(items)))
    bottom = [0.0] * len(items)
    for name, _, colour in STAGES:
        heights = [stages.get(name or "rest", 0.0) for _, stages in items]
        alpha = [1.0 if r.raw.get("valid") is not False else 0.35 for r, _ in items]
        for x, h, b, a in zip(xs, heights, bottom, alpha):
            ax.bar(x, h, bottom=b, color=colour, alpha=a, width=0.72, edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for x, total in zip(xs, bottom):
        ax.annotate(fmt_number(total), (x, total), xytext=(0, 3), textcoords="offset points", ha="center",
                    fontsize=7.5)
    ax.set_xticks(xs, [fmt_number(r.rate) + ("\n(invalid)" if r.raw.get("valid") is False else "")
                       for r, _ in items], fontsize=8)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("TTFT p50 (ms), split by stage")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(setup, fontsize=10)


def _note(rows: dict[str, list[tuple[RunView, dict[str, float]]]]) -> str:
    """One line per set-up at its lowest rate: the split in words, for the page."""
    lines = []
    for setup, items in rows.items():
        r, stages = items[0]
        total = sum(stages.values())
        parts = ", ".join(f"{label.split(' (')[0]} {fmt_number(stages[name or 'rest'])} ms "
                          f"({stages[name or 'rest'] / total:.0%})"
                          for name, label, _ in STAGES if (name or "rest") in stages)
        lines.append(f"- {setup} at {fmt_number(r.rate)} req/s: TTFT p50 {fmt_number(total)} ms = {parts}")
    return ("At each set-up's lowest rate (colocated serving has no prefill or hand-off stage: its prefill is "
            "inside decode's first token; so is a KV transfer that decode makes itself: NIXL's read, disk's load):\n\n"
            + "\n".join(lines))


__all__ = ["STAGES", "stage_split", "ttft_split"]
