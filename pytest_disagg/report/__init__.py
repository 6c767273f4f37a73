"""The report: PNG plots and an ``index.md`` page from a session's results JSON (read only).

``build_report(results, out_dir)`` draws from one results document (a dict as written by
``--disagg-json``); ``pytest-disagg report A.json [B.json ...] --out DIR`` does the same from
files, newest results file first, and plots a metric's history when several files (results or
stored baselines) are given. Nothing here reaches back into a session: the JSON is the contract
(docs/ARCHITECTURE.md).

Modules: ``inputs`` (reading and checking files), ``runs`` (a run entry as the report reads it),
``style`` (one look per set-up), ``plots`` (one function per figure; ``ttft_split`` and ``ab_plot``
draw where TTFT goes and the A/B rounds), ``fit`` (every text on its canvas), ``tables`` (markdown
tables), ``page`` (the sections and ``index.md``), ``html`` (the same page as one self-contained
``report.html``) and ``cli`` (the console command). Synthetic results for
tests live in ``pytest_disagg.testing.synthetic``: the report imports nothing but the JSON's shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .inputs import Document, ReportInputError, as_document, load_document
from .page import INDEX, render


def build_report(results: Mapping[str, Any] | Document, out_dir: str | Path, *,
                 history: Sequence[Mapping[str, Any] | Document] = (), metric: str = "ttft_ms:p50") -> Path:
    """Write the report of ``results`` under ``out_dir``; returns the path of ``index.md``.

    ``history``: other results (or baseline) documents; with them, ``metric`` (``NAME[:STAT]``,
    e.g. ``ttft_ms:p50``, ``output_throughput``) is plotted across all of them, oldest first.
    A document that is not usable raises :class:`ReportInputError` naming it.
    """
    primary = as_document(results, "<results>")
    others = [as_document(h, f"<history {i}>") for i, h in enumerate(history)]
    return render(primary if primary.kind == "results" else None, [primary, *others], Path(out_dir), metric)


__all__ = ["INDEX", "Document", "ReportInputError", "build_report", "load_document"]
