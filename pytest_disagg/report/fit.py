"""Text that stays on the canvas: every title, label, tick label and legend inside the figure.

Why: constrained layout shrinks axes to make room for their decorations, but a figure title or a
figure legend wider than the canvas is simply cut at the edges (the issue's energy_per_token.png
lost both ends of its title, history.png the end of its legend). ``fit`` wraps titles and narrows
figure legends until they fit; ``overflows`` lists what still does not, for the tests.
"""
from __future__ import annotations

import textwrap
from typing import Iterator

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE_PX = 1.0
MAX_TRIES = 6


def _renderer(fig: Figure):
    """The Agg renderer after a layout pass (a figure made without pyplot gets an Agg canvas)."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _drawn_ticklabels(ax, axis: str) -> Iterator[Text]:
    """Tick labels of the ticks inside the view (the others are not drawn)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    low, high = sorted(target.get_view_interval())
    for tick in target.get_major_ticks() + target.get_minor_ticks():
        if low <= tick.get_loc() <= high:
            yield from (t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text())


def texts(fig: Figure) -> Iterator[tuple[str, object]]:
    """(what, artist) for every visible text a reader needs: figure and axes titles, axis labels,
    drawn tick labels, texts and annotations, legends."""
    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        artist = getattr(fig, name, None)
        if artist is not None and artist.get_visible() and artist.get_text():
            yield name.strip("_"), artist
    for i, legend in enumerate(fig.legends):
        yield f"figure legend {i}", legend
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        where = f"axes {k} ({ax.get_title() or 'untitled'})"
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                yield f"{where} title", title
        for label in (ax.xaxis.label, ax.yaxis.label):
            if label.get_visible() and label.get_text():
                yield f"{where} axis label {label.get_text()!r}", label
        for axis in "xy":
            for t in _drawn_ticklabels(ax, axis):
                yield f"{where} {axis} tick label {t.get_text()!r}", t
        for t in ax.texts:
            if t.get_visible() and t.get_text():
                yield f"{where} text {t.get_text()[:30]!r}", t
        if ax.get_legend() is not None:
            yield f"{where} legend", ax.get_legend()


def overflows(fig: Figure) -> list[str]:
    """What sticks out of the canvas, with by how many pixels; empty when everything fits."""
    renderer = _renderer(fig)
    canvas = fig.bbox
    out = []
    for what, artist in texts(fig):
        box: Bbox = artist.get_window_extent(renderer)
        over = max(canvas.x0 - box.x0, box.x1 - canvas.x1, canvas.y0 - box.y0, box.y1 - canvas.y1)
        if over > TOLERANCE_PX:
            out.append(f"{what}: {over:.0f} px outside the {canvas.width:.0f}x{canvas.height:.0f} px canvas")
    return out


def _too_wide(artist, renderer, width: float) -> float:
    """How many times wider than ``width`` the artist is (<= 1: it fits)."""
    return artist.get_window_extent(renderer).width / max(width, 1.0)


def _wrap(text: Text, ratio: float) -> None:
    lines = text.get_text().split("\n")
    longest = max(len(line) for line in lines)
    limit = max(20, int(longest / ratio * 0.95))
    text.set_text("\n".join(w for line in lines for w in (textwrap.wrap(line, limit) or [""])))


def fit(fig: Figure) -> None:
    """Wrap titles and narrow figure legends until each fits the canvas's width (a few passes: the
    layout moves things after each change)."""
    for _ in range(MAX_TRIES):
        renderer = _renderer(fig)
        changed = False
        for artist, width in _width_checks(fig):
            ratio = _too_wide(artist, renderer, width)
            if ratio <= 1.0:
                continue
            if isinstance(artist, Text):
                _wrap(artist, ratio)
                changed = True
            elif artist._ncols > 1:
                _narrow(fig, artist, max(1, min(artist._ncols - 1, int(artist._ncols / ratio))))
                changed = True
        if not changed:
            return


def _narrow(fig: Figure, legend, ncols: int) -> None:
    """Draw a figure legend again with fewer columns (a legend lays out its columns once, when made;
    the report's figure legends all sit outside, below the axes)."""
    handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
    fontsize, frameon = legend._fontsize, legend.get_frame_on()
    legend.remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=fontsize, frameon=frameon)


def _width_checks(fig: Figure) -> Iterator[tuple[object, float]]:
    """(artist, the width it must fit in, px): figure-wide texts and legends the canvas, an axes
    title its axes (with some slack, it may reach over the labels)."""
    canvas = fig.bbox.width
    for name in ("_suptitle", "_supxlabel"):
        artist = getattr(fig, name, None)
        if artist is not None and artist.get_text():
            yield artist, canvas - 8
    for legend in fig.legends:
        yield legend, canvas - 8
    for ax in fig.axes:
        if ax.get_visible() and ax.title.get_text():
            yield ax.title, ax.bbox.width * 1.15


__all__ = ["fit", "overflows", "texts"]
