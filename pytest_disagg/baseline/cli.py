"""``pytest-disagg baselines {list,show,diff,history,refresh}``: the store, read and promoted.

``register(subparsers)`` adds the ``baselines`` command to the top-level parser of
``pytest_disagg/cli.py``; each subcommand sets ``func(args) -> int`` and prints tables with
tabulate. Exit codes are the rule every comparing command shares (``verdicts.EXIT_*``, as
``pytest-disagg compare``): ``diff`` exits 1 when a row's verdict is one of ``--fail-on`` (default:
regressed); unknown ids (listing the ids that do exist) and unreadable files (naming them) exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from .. import verdicts
from ..results import load_results
from . import views
from .fingerprint import describe_machine
from .settings import SettingsError, parse_tolerance
from .store import BaselineError, BaselineStore

EXIT_OK, EXIT_FAILED = verdicts.EXIT_OK, verdicts.EXIT_FAILED
EXIT_BAD_FILE = EXIT_UNKNOWN = verdicts.EXIT_BAD_INPUT


def _store(args) -> BaselineStore:
    return BaselineStore(args.dir, args.candidates_dir)


def _table(rows, headers, args) -> str:
    return tabulate(rows, headers=headers, tablefmt=args.tablefmt, disable_numparse=True)


def cmd_list(args) -> int:
    rows = views.list_rows(_store(args), args.pattern)
    if not rows:
        print(f"no baselines or candidates under {args.dir}" + (f" matching {args.pattern!r}" if args.pattern else ""))
        return EXIT_OK
    print(_table(rows, views.LIST_HEADERS, args))
    bad = [r for r in rows if "UNREADABLE" in str(r[3])]
    if bad:
        print(f"\n{len(bad)} unreadable file(s): refresh them or restore them from git", file=sys.stderr)
        return EXIT_BAD_FILE
    return EXIT_OK


def cmd_show(args) -> int:
    store = _store(args)
    machine = views.resolve_machine(store, args.fingerprint)
    if args.benchmark is None:
        print(f"fingerprint {machine}: {describe_machine(views.machine_of(store, machine))}\n")
        print(_table(views.field_rows(views.machine_of(store, machine)), ["field", "value"], args))
        entries = views.entries_of(store, machine, candidates=True)
        rows = [[e.benchmark, "candidate" if e.candidate else "baseline",
                 e.doc["created"] if e.doc else f"UNREADABLE: {e.error}"] for e in entries]
        print()
        print(_table(rows, ["benchmark", "kind", "created"], args))
        return EXIT_OK
    entry = views.one_entry(store, machine, args.benchmark)
    if entry.error:
        raise BaselineError(entry.error)
    doc = entry.doc
    print(f"{entry.benchmark} ({'candidate' if entry.candidate else 'baseline'}) — {entry.path}")
    print(f"created {doc['created']}, git {doc.get('git_commit') or '-'}, schema {doc['schema_version']}\n")
    print(_table(views.metric_rows(doc), views.METRIC_HEADERS, args))
    for title, fields in (("machine", doc["fingerprint"]["machine"]), ("subject (hashes)", doc["fingerprint"]["subject"]),
                          ("config", doc["config"]), ("workload", doc.get("workload") or {})):
        print(f"\n{title}:")
        print(_table(views.field_rows(fields), ["field", "value"], args))
    return EXIT_OK


def cmd_diff(args) -> int:
    store = _store(args)
    a, b = views.resolve_machine(store, args.a), views.resolve_machine(store, args.b)
    result = views.diff(store, a, b, args.pattern, tolerances=parse_tolerance(args.tolerance))
    print(f"A = {a}, B = {b}")
    if result.machine_changes:
        rows = [[k, views.show_value(x), views.show_value(y)] for k, (x, y) in result.machine_changes.items()]
        print(_table(rows, ["machine field", "A", "B"], args))
    else:
        print("(same machine fields)")
    print()
    if result.rows:
        print(_table(result.rows, views.DIFF_HEADERS, args))
    else:
        print("no benchmark is stored under both fingerprints")
    for side, names in (("A", result.only_a), ("B", result.only_b)):
        if names:
            print(f"\nonly under {side}: {', '.join(names)}")
    return _diff_exit(result.words, args.fail_on)


def _diff_exit(words: list[str], fail_on: frozenset[str]) -> int:
    reason = verdicts.failing(words, fail_on)
    if reason is None:
        return EXIT_OK
    print(f"pytest-disagg baselines: {reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_history(args) -> int:
    docs = [(str(path), load_results(path)) for path in args.results]
    store = _store(args) if (not docs or Path(args.dir).is_dir()) else None
    result = views.history(store, args.metric, args.pattern, stat=args.stat, candidates=args.candidates,
                           results=docs, change_points=args.change_points, max_pvalue=args.cp_pvalue)
    print(_table(result.rows, result.headers, args))
    if not result.changing:
        print("\n(no machine field changed between these fingerprints)")
    if args.change_points:
        if result.change_points:
            print(f"\n{len(result.change_points)} change point(s) (E-Divisive means, Apache Otava, "
                  f"p < {args.cp_pvalue:g}):")
            for cp in result.change_points:
                change = f"{cp['change'] * 100:+.1f} %" if cp["change"] is not None else "?"
                print(f"  {cp['benchmark']}: from {cp['created']} ({cp['fingerprint']}): mean "
                      f"{cp['mean_before']:.4g} -> {cp['mean_after']:.4g} ({change}), p={cp['pvalue']:.2g}")
        else:
            print(f"\nno change point (E-Divisive means, Apache Otava, p < {args.cp_pvalue:g}; a series "
                  "needs 4 points or more)")
    for error in result.unreadable:
        print(f"pytest-disagg baselines: left out {error}", file=sys.stderr)
    return EXIT_BAD_FILE if result.unreadable else EXIT_OK


def cmd_refresh(args) -> int:
    store = _store(args)
    moved = store.promote(args.patterns or None, dry_run=args.dry_run)
    if not moved:
        what = f" matching {', '.join(args.patterns)}" if args.patterns else ""
        print(f"no candidates{what} under {store.candidates_root}")
        return EXIT_UNKNOWN if args.patterns else EXIT_OK
    verb = "would promote" if args.dry_run else "promoted"
    for source, target in moved:
        print(f"{verb} {source} -> {target}")
    return EXIT_OK


def _pvalue(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cp-pvalue {text!r}: not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"--cp-pvalue {text!r}: must be between 0 and 1 (exclusive)")
    return value


def _fail_on(text: str) -> frozenset[str]:
    try:
        return verdicts.parse_fail_on(text)
    except verdicts.VerdictError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fail_on(parser: argparse.ArgumentParser) -> None:
    """``--fail-on WORDS``, the same for every comparing command (``diff``, ``pytest-disagg compare``)."""
    parser.add_argument("--fail-on", type=_fail_on, default=verdicts.DEFAULT_FAIL_ON, metavar="WORDS",
                        help="exit 1 when a row's verdict is one of these words (comma-separated, or none; "
                             "default: regressed)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``baselines`` and its subcommands to a top-level ``add_subparsers()`` object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default="baselines", help="the baselines directory (default: baselines)")
    common.add_argument("--candidates-dir", default=None,
                        help="where candidates are kept (default: DIR/.candidates)")
    common.add_argument("--tablefmt", default="simple", help="tabulate format, e.g. github (default: simple)")

    parser = subparsers.add_parser("baselines", help="list, show, compare and promote stored baselines",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="baselines_command", metavar="{list,show,diff,history,refresh}", required=True)

    p = sub.add_parser("list", parents=[common], help="every fingerprint and benchmark (baselines and candidates)")
    p.add_argument("pattern", nargs="?", help="only benchmarks matching this shell pattern")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="one fingerprint, or one benchmark's baseline")
    p.add_argument("fingerprint", help="machine hash (a unique prefix of 4+ characters is enough)")
    p.add_argument("benchmark", nargs="?", help="benchmark id or shell pattern matching exactly one")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", parents=[common], help="two fingerprints, metric by metric (B judged against A)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("pattern", nargs="?", help="only benchmarks matching this shell pattern")
    p.add_argument("--tolerance", default=None, help="as --disagg-tolerance, e.g. 3%% or latency=2%%,throughput=10%%")
    add_fail_on(p)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("history", parents=[common], help="one metric across fingerprints, oldest first")
    p.add_argument("metric", help="e.g. tpot_ms")
    p.add_argument("pattern", nargs="?", help="only benchmarks matching this shell pattern, e.g. '*nixl-cpu*'")
    p.add_argument("--stat", default="median", choices=views.STATS)
    p.add_argument("--candidates", action="store_true", help="include candidates")
    p.add_argument("--results", nargs="+", default=[], metavar="JSON",
                   help="results files (--disagg-json) to add to the series, e.g. one per nightly run")
    p.add_argument("--change-points", action="store_true",
                   help="mark where each benchmark's series shifted (E-Divisive means, Apache Otava)")
    p.add_argument("--cp-pvalue", type=_pvalue, default=0.001, metavar="P",
                   help="significance a change point must reach (default 0.001)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("refresh", parents=[common], help="promote candidates to baselines (all, or by pattern)")
    p.add_argument("patterns", nargs="*", help="shell patterns on benchmark id, file name or fingerprint hash")
    p.add_argument("--dry-run", action="store_true", help="say what would be promoted, change nothing")
    p.set_defaults(func=cmd_refresh)
    return parser


def run(args) -> int:
    """Run a parsed ``baselines`` command, turning the store's errors into messages and exit codes."""
    try:
        return args.func(args)
    except views.UnknownIdError as exc:
        print(f"pytest-disagg baselines: {exc.args[0]}", file=sys.stderr)
        return EXIT_UNKNOWN
    except (BaselineError, SettingsError, ValueError) as exc:
        print(f"pytest-disagg baselines: {exc}", file=sys.stderr)
        return EXIT_BAD_FILE


__all__ = ["add_fail_on", "register", "run"]
