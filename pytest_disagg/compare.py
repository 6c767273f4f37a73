"""``pytest-disagg compare A B``: two results files, set-up by set-up and metric by metric.

A and B are kept runs (an id under ``.disagg/runs``, a unique prefix of one, ``latest`` or
``previous``: ``runs.py``), run directories or results JSON files. B is judged against A with the
stored-baseline gate's rule (``baseline.gate.compare_metrics``: the bootstrap interval of the
ratio of medians of the per-request samples against the metric's tolerance; a run-level figure on
the tolerance alone), so a row says what ``--disagg-baseline`` would say had A been the baseline.

A set-up is what the gate keys a run by: its test, its deployment, its gate name
(``load-sweep[r0]``, else ``benchmark[load]``) and its A/B side. Several runs of one set-up in a file (A/B rounds) are
pooled. A run marked invalid on either side is ``invalid``, as in the gate.

Exit codes are the rule every comparing command shares (``verdicts.EXIT_*``, as ``baselines
diff``): 1 when a row's word is one of ``--fail-on`` (default: regressed), 2 on input that names
no results (one line: the file or id and what is wrong; nothing is written), else 0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from . import runs
from . import verdicts as words
from .baseline import gate
from .baseline.cli import add_fail_on
from .baseline.fingerprint import changed_fields
from .baseline.settings import SettingsError, parse_tolerance
from .baseline.store import matches
from .metrics import MetricError, default_tolerances, describe
from .results import ResultsError, load_results

HEADERS = ["set-up", "benchmark", "metric", "A median", "B median", "B/A", "CI", "verdict"]


@dataclass(frozen=True)
class Side:
    """One side of the comparison: what the user named, the file it led to, its document."""
    ref: str
    path: Path
    doc: dict

    def label(self) -> str:
        fingerprint = self.doc.get("fingerprint") or {}
        named = self.ref if str(self.path) == self.ref else f"{self.ref} = {self.path}"
        return f"{named} (created {self.doc.get('created')}, machine {fingerprint.get('machine_hash', '-')})"

    def machine(self) -> dict:
        return dict((self.doc.get("fingerprint") or {}).get("machine") or {})


@dataclass
class Comparison:
    rows: list[list[str]]
    words: list[str]
    only_a: list[str]
    only_b: list[str]


def load_side(ref: str, root: Path | None) -> Side:
    path = runs.resolve(ref, root)
    return Side(ref, path, load_results(path))


Key = tuple[str, str, str, str]


def setup_key(run: dict) -> Key:
    """(test, deployment, gate name, A/B side): what a baseline of the run is stored under."""
    name = run.get("gate_name") or f"{run.get('benchmark')}[{run.get('load')}]"
    return str(run.get("test") or ""), str(run.get("deployment") or "-"), str(name), str(run.get("side") or "")


def by_setup(doc: dict, pattern: str | None = None) -> dict[Key, list[dict]]:
    """The document's runs by set-up; with ``pattern``, only set-ups whose test, deployment or
    gate name it matches (``baselines`` patterns: ``*``, ``?``, brackets literal)."""
    out: dict[Key, list[dict]] = {}
    for run in doc.get("runs") or []:
        if isinstance(run, dict):
            key = setup_key(run)
            if not pattern or matches(pattern, *key[:3], f"{key[1]} {key[2]}"):
                out.setdefault(key, []).append(run)
    return out


def describe_setup(key: Key) -> str:
    test, setup, name, side = key
    return f"{setup} {name}" + (f" side {side}" if side else "") + f"  ({test.rpartition('::')[2] or test})"


def pooled_samples(group: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for run in group:
        for name, values in (run.get("samples") or {}).items():
            out.setdefault(name, []).extend(v for v in values if v is not None)
    return {name: values for name, values in out.items() if values}


def pooled_scalars(group: list[dict]) -> dict[str, float]:
    """Each run-level figure's median over the set-up's runs."""
    values: dict[str, list[float]] = {}
    for run in group:
        for name, value in (run.get("scalars") or {}).items():
            if value is not None:
                values.setdefault(name, []).append(float(value))
    return {name: statistics.median(v) for name, v in values.items()}


def _known(name: str) -> bool:
    try:
        describe(name)
    except MetricError:
        return False
    return True


def invalid(group_a: list[dict], group_b: list[dict]) -> gate.Verdict | None:
    """One ``invalid`` row when a run on either side measured the machine (validity rules), as the
    gate keeps such runs out; None when every run is valid."""
    reasons = [f"{side}: {'; '.join(map(str, run.get('invalid_reasons') or [])) or 'marked invalid'}"
               for side, group in (("A", group_a), ("B", group_b)) for run in group if run.get("valid") is False]
    if not reasons:
        return None
    return gate.Verdict(metric="*", verdict=words.INVALID, direction="lower", tolerance=0.0, method="none",
                        reason=" | ".join(reasons))


def judge(group_a: list[dict], group_b: list[dict], tolerances: dict, defaults: dict) -> list[gate.Verdict]:
    """B's figures against A's, metric by metric (the gate's rule; see the module docstring)."""
    unusable = invalid(group_a, group_b)
    if unusable is not None:
        return [unusable]
    samples_a, samples_b = pooled_samples(group_a), pooled_samples(group_b)
    scalars_a, scalars_b = pooled_scalars(group_a), pooled_scalars(group_b)
    names_a, names_b = set(samples_a) | set(scalars_a), set(samples_b) | set(scalars_b)
    one_sided = [_not_compared(n, "only in A" if n in names_a else "only in B")
                 for n in sorted(names_a ^ names_b) if _known(n)]
    unknown = [_not_compared(n, "not in the metric table") for n in sorted(names_a | names_b) if not _known(n)]
    shared = {n for n in names_a & names_b if _known(n)}
    baseline = {**{n: {"kind": "scalar", "value": v} for n, v in scalars_a.items() if n in shared},
                **{n: {"kind": "samples", "samples": v} for n, v in samples_a.items() if n in shared}}
    judged = gate.compare_metrics(baseline, {n: v for n, v in samples_b.items() if n in shared},
                                  {n: v for n, v in scalars_b.items() if n in shared},
                                  tolerances=tolerances, defaults=defaults)
    return sorted(judged + one_sided + unknown, key=lambda v: v.metric)


def _not_compared(name: str, reason: str) -> gate.Verdict:
    return gate.Verdict(metric=name, verdict=words.NOT_COMPARED, direction="lower", tolerance=0.0,
                        method="none", reason=reason)


def _median(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.4g} {unit}".rstrip()


def row(setup: str, benchmark: str, v: gate.Verdict) -> list[str]:
    ratio = "-" if v.ratio is None else f"{v.ratio:.3f}"
    ci = f"[{v.ci[0]:.3f}, {v.ci[1]:.3f}]" if v.ci else ("no-ci" if v.method == "no-ci" else "-")
    verdict = v.verdict + (f": {v.reason}" if v.reason and v.method != "no-ci" else "")
    return [setup, benchmark, v.metric, _median(v.baseline, v.unit), _median(v.current, v.unit), ratio, ci, verdict]


def compare(a: Side, b: Side, tolerances: dict | None = None, pattern: str | None = None) -> Comparison:
    """Every set-up in both files, judged B against A; the set-ups on one side only, named."""
    groups_a, groups_b = by_setup(a.doc, pattern), by_setup(b.doc, pattern)
    defaults = default_tolerances(b.machine())
    rows, found = [], []
    for key in sorted(set(groups_a) & set(groups_b), key=lambda k: (k[1], k[0], k[2], k[3])):
        _, setup, name, side = key
        for v in judge(groups_a[key], groups_b[key], tolerances or {}, defaults):
            rows.append(row(setup, name + (f" side {side}" if side else ""), v))
            found.append(v.verdict)
    only = [sorted(map(describe_setup, keys)) for keys in (set(groups_a) - set(groups_b), set(groups_b) - set(groups_a))]
    return Comparison(rows, found, *only)


def report(a: Side, b: Side, result: Comparison, tablefmt: str) -> str:
    lines = [f"A = {a.label()}", f"B = {b.label()}"]
    changes = changed_fields(a.machine(), b.machine())
    lines += [f"machine {k}: {x} -> {y}" for k, (x, y) in changes.items()] or ["(same machine fields)"]
    lines.append("")
    lines.append(tabulate(result.rows, headers=HEADERS, tablefmt=tablefmt, disable_numparse=True)
                 if result.rows else "no set-up is in both files")
    for side, names in (("A", result.only_a), ("B", result.only_b)):
        if names:
            lines.append(f"\nonly in {side} ({len(names)} set-ups):")
            lines += [f"  {name}" for name in names]
    counts = {w: result.words.count(w) for w in words.WORDS if w in result.words}
    lines.append(f"\n{len(result.rows)} row(s): " + (", ".join(f"{n} {w}" for w, n in counts.items()) or "none"))
    return "\n".join(lines)


def cmd_compare(args) -> int:
    root = Path(args.runs_dir) if args.runs_dir else runs.find_root(Path(os.getcwd()))
    a, b = load_side(args.a, root), load_side(args.b, root)
    result = compare(a, b, parse_tolerance(args.tolerance), args.pattern)
    print(report(a, b, result, args.tablefmt))
    reason = words.failing(result.words, args.fail_on)
    if reason is None:
        return words.EXIT_OK
    print(f"pytest-disagg compare: {reason}", file=sys.stderr)
    return words.EXIT_FAILED


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("compare", help="two runs or results files, set-up by set-up (B judged "
                                   "against A)", description=__doc__.split("\n\n")[0])
    for side in ("a", "b"):
        parser.add_argument(side, metavar=side.upper(), help="run id (a unique prefix, latest, previous), run "
                            "directory or results JSON file")
    parser.add_argument("pattern", nargs="?", help="only set-ups whose test, deployment or benchmark matches this "
                        "shell pattern, e.g. '*nixl-cpu*'")
    parser.add_argument("--runs-dir", default=None, help=f"where run ids are looked up (default: the nearest "
                        f"{runs.RUNS_DIR} in this directory or above)")
    parser.add_argument("--tolerance", default=None, help="as --disagg-tolerance, e.g. 3%% or latency=2%%")
    parser.add_argument("--tablefmt", default="simple", help="tabulate format, e.g. github (default: simple)")
    add_fail_on(parser)
    parser.set_defaults(func=cmd_compare)
    return parser


def run(args) -> int:
    """Run a parsed ``compare``: input that names no results is one line on stderr and exit 2."""
    try:
        return args.func(args)
    except (runs.RunsError, ResultsError, SettingsError) as exc:
        print(f"pytest-disagg compare: {exc}", file=sys.stderr)
        return words.EXIT_BAD_INPUT


__all__ = ["Comparison", "Side", "compare", "judge", "load_side", "register", "run", "setup_key"]
