"""``pytest-disagg export RESULTS.json [MORE.json ...] --format pytest-benchmark|otava|csv|gab-smaller|gab-bigger -o PATH``.

pytest-benchmark and gab-smaller/gab-bigger (github-action-benchmark's custom JSON, ``gab.py``) take
one results file (one run of the suite is one pytest-benchmark run) and
writes one JSON; ``csv`` writes one CSV and ``otava`` a directory, both from any number of files
(their history, ordered by the time each session wrote its file). Figures left out (unknown
metric, a run marked invalid, a throughput of 0) are listed on stderr. Exit codes: 0 written,
1 the output cannot be written, 2 unusable input or options (the file or option is named).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..baseline.document import git_commit
from ..files import atomic_write, new_file_mode
from . import FORMATS, ExportError, benchjson, gab, read, series

EXIT_OK, EXIT_CANNOT_WRITE, EXIT_BAD_INPUT = 0, 1, 2


def write_json_atomic(path: Path, data: dict | list) -> None:
    atomic_write(path, json.dumps(data, indent=1, allow_nan=False) + "\n", file_mode=new_file_mode())


def cmd_export(args) -> int:
    if args.format in ("pytest-benchmark", *gab.FORMATS) and len(args.files) != 1:
        raise ExportError(f"--format {args.format} takes one results file, got {len(args.files)} "
                          "(export each, then `pytest-benchmark compare A.json B.json`)")
    files = [read(path, include_invalid=args.include_invalid) for path in args.files]
    out = Path(args.output)
    notes: list[str] = []
    if args.format == "pytest-benchmark":
        commit, source = files[0].commit, "results"
        if commit is None:
            commit, source = git_commit(Path(args.files[0]).resolve().parent), "checkout of the results file"
        doc, notes = benchjson.document(files[0], with_data=args.with_data, commit=commit, commit_source=source)
        write_json_atomic(out, doc)
        what = f"{len(doc['benchmarks'])} benchmarks"
        estimated = sum(1 for b in doc["benchmarks"] if b["extra_info"].get("estimated"))
        if estimated:
            print(f"pytest-disagg export: {estimated} entries come from summaries ({args.files[0]} has no per-request "
                  "samples): min/max/mean/median/stddev exact, quartiles and outlier counts estimated "
                  "(extra_info.estimated)", file=sys.stderr)
    elif args.format in gab.FORMATS:
        notes, what = list(files[0].skipped), write_gab(files[0], args.format, out)
        if what is None:
            return EXIT_OK
    elif args.format == "csv":
        notes = [n for f in files for n in f.skipped]
        what = f"{series.write_csv(files, out)} rows"
    else:
        tests, said = series.write_otava(files, out)
        notes = [n for f in files for n in f.skipped]
        what = f"{len(tests)} Otava tests (config {out / series.OTAVA_CONFIG})"
        for sentence in said:
            print(f"pytest-disagg export: {sentence}", file=sys.stderr)
    for note in notes:
        print(f"pytest-disagg export: left out {note}", file=sys.stderr)
    print(f"{args.format}: {what} written to {out}")
    return EXIT_OK


def write_gab(results, fmt: str, out: Path) -> str | None:
    """The entries of one direction; none (a file without throughputs): no file (None), as the
    action refuses an empty one."""
    entries = gab.document(results, fmt)
    if not entries:
        print(f"pytest-disagg export: {results.path} has no {gab.FORMATS[fmt]}-is-better figure: "
              f"{out} not written", file=sys.stderr)
        return None
    write_json_atomic(out, entries)
    return f"{len(entries)} entries"


def run(args) -> int:
    try:
        return cmd_export(args)
    except (ExportError, OSError) as exc:
        bad_input = isinstance(exc, ExportError)
        text = exc if bad_input else f"cannot write {args.output}: {exc}"
        print(f"pytest-disagg export: error: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else EXIT_CANNOT_WRITE


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="results JSON as pytest-benchmark JSON, github-action-benchmark custom JSON, Apache Otava "
                       "input or a CSV",
        description="Write a session's results where other benchmark tools read them: pytest-benchmark JSON "
                    "(pytest-benchmark compare, github-action-benchmark tool 'pytest', Bencher), one entry per "
                    "test, deployment, load point and metric; a tidy CSV or Apache Otava's input of each "
                    "metric's history across several results files; github-action-benchmark's custom JSON (gab-smaller: "
                    "lower-is-better figures for tool customSmallerIsBetter, gab-bigger: throughputs for "
                    "customBiggerIsBetter), medians in each metric's unit.")
    parser.add_argument("files", nargs="+", metavar="RESULTS.json", help="results files written by --disagg-json")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("-o", "--output", required=True, metavar="PATH",
                        help="the file to write (pytest-benchmark, csv, gab-*) or the directory (otava)")
    parser.add_argument("--with-data", action="store_true",
                        help="pytest-benchmark: include every sample under stats.data (as pytest-benchmark "
                             "--benchmark-save-data does)")
    parser.add_argument("--include-invalid", action="store_true",
                        help="also export runs the validity rules marked invalid (left out by default)")
    parser.set_defaults(func=cmd_export)
    return parser
