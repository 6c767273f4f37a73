"""``pytest-disagg report RESULTS.json [MORE.json ...] --out DIR``: the report from files.

``register(subparsers)`` adds the command to the top-level parser of ``pytest_disagg/cli.py``;
``run(args)`` maps errors onto exit codes: an unusable input (missing, not JSON, wrong schema)
or a bad ``--metric`` exits 2 with the file named; an output directory that cannot be written
exits 1; success prints the page's path and exits 0.
"""
from __future__ import annotations

import argparse
import sys

from .inputs import KIND_RESULTS, ReportInputError, load_document, merge_results
from .page import HTML, INDEX, parse_metric, render

EXIT_OK, EXIT_CANNOT_WRITE, EXIT_BAD_INPUT = 0, 1, 2


def cmd_report(args) -> int:
    parse_metric(args.metric)
    docs = [load_document(path) for path in args.files]
    if args.merge:
        docs = [merge_results(docs)]
    results = [d for d in docs if d.kind == KIND_RESULTS]
    primary = max(results, key=lambda d: d.created_at) if results else None
    page = render(primary, docs, args.out, args.metric)
    print(f"report written to {page} (one self-contained file: {page.parent / HTML})")
    missing = [line for line in page.read_text().splitlines() if line.startswith("- [") and "not measured" in line]
    if missing:
        print(f"{len(missing)} section(s) not measured: "
              + ", ".join(line.split("](")[0][3:] for line in missing) + f" (reasons in {INDEX})")
    return EXIT_OK


def run(args) -> int:
    try:
        return cmd_report(args)
    except ReportInputError as exc:
        print(f"pytest-disagg report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"pytest-disagg report: error: cannot write the report under {args.out}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``report`` to a top-level ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "report", help="PNG plots and an index.md page from results JSON (--disagg-json)",
        description="Draw the report of a session's results JSON: latency vs rate with crossovers, energy per "
                    "token, the latency-energy frontier over clocks, the batch sweep, tables, and — given several "
                    "results or baseline files — a metric's history across versions. The newest results file "
                    "is the one reported; all files make the history.")
    parser.add_argument("files", nargs="+", metavar="RESULTS.json",
                        help="results files written by --disagg-json, and/or baseline files (history only)")
    parser.add_argument("--out", default="disagg-report", metavar="DIR",
                        help="directory for index.md, the PNGs and report.html (default: disagg-report)")
    parser.add_argument("--metric", default="ttft_ms:p50", metavar="METRIC[:STAT]",
                        help="the metric the history plot follows, e.g. tpot_ms:p90 or output_throughput "
                             "(default: ttft_ms:p50)")
    parser.add_argument("--merge", action="store_true",
                        help="the results files are parts of one session (e.g. one pytest run per set-up on one "
                             "machine): report their runs together instead of as history")
    parser.set_defaults(func=cmd_report)
    return parser
