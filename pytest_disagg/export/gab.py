"""Results as github-action-benchmark's custom JSON: each figure in its own unit, the gate's figure.

``tool: 'pytest'`` charts 1/mean, so TTFT read as "iter/sec" and the alert fired on a mean while
the gate judges medians. The action's ``customSmallerIsBetter`` / ``customBiggerIsBetter`` take
``[{name, unit, value, range, extra}]`` as they are, so: ``--format gab-smaller`` writes every
lower-is-better figure (times in ms, energy in J, J/token), ``--format gab-bigger`` every
higher-is-better one (throughputs in tok/s, req/s); one entry per (test, deployment, load point,
[A/B side,] metric):

- ``name``: ``<test>[<deployment>]::<load label>::<metric>``. The load label is the name the gate
  judges the run under (``gate_name``, e.g. ``load-sweep[r0]``: the ladder's rung, not its rate),
  so a re-probe that moves every rate renames no series. Files written before runs recorded it
  fall back to ``<benchmark>[r<ladder_index>]``, then to the load point as recorded (``rate=4/s``);
- ``value``: the median of a per-request metric (the figure the gate compares), a run-level
  figure's value;
- ``range``: the median's bootstrap interval as the results store it (``lo–hi``), left out for
  run-level figures;
- ``extra``: the load point as measured (the probed rate), n, the gate's word and the fingerprint's
  short hashes (machine/subject).

Runs marked invalid are left out, as in every export. The action rejects a file with no entry, so
a direction with none writes no file (the workflow's step then skips: ``hashFiles``).
"""
from __future__ import annotations

from ..baseline.fingerprint import stable_hash
from .adapter import ExportError, Figure, ResultsFile, machine_fields
from .benchjson import short_name
from .series import _unique, figure_numbers

FORMATS = {"gab-smaller": "lower", "gab-bigger": "higher"}


def entry_name(fig: Figure) -> str:
    return "::".join(p for p in (short_name(fig), fig.load_label, fig.side, fig.metric.name) if p)


def stored_summary(fig: Figure) -> dict:
    """The run's summary of the figure's metric ({} for a run-level figure or none stored)."""
    summary = fig.run.get("summary") if isinstance(fig.run.get("summary"), dict) else {}
    found = summary.get(fig.metric.name) if fig.kind != "value" else None
    return found if isinstance(found, dict) else {}


def median(fig: Figure) -> float:
    """The summary's p50 when stored (computed at full precision; stored samples are rounded),
    else the samples' median, or the run-level value."""
    stored = stored_summary(fig).get("p50")
    return float(stored) if isinstance(stored, (int, float)) else float(figure_numbers(fig)["p50"])


def median_range(fig: Figure) -> str | None:
    """The stored interval of the median, ``lo–hi`` in the metric's unit; None when none is stored."""
    ci = stored_summary(fig).get("ci")
    span = ci.get("p50") if isinstance(ci, dict) else None
    if not (isinstance(span, list) and len(span) == 2):
        return None
    return f"{span[0]:.4g}–{span[1]:.4g}"


def fingerprint_tag(fig: Figure, results: ResultsFile) -> str:
    """The run's machine/subject hashes, else a hash of the file's machine fields."""
    fp = fig.run.get("fingerprint") if isinstance(fig.run.get("fingerprint"), dict) else {}
    if fp.get("machine_hash"):
        return "/".join(str(fp[k]) for k in ("machine_hash", "subject_hash") if fp.get(k))
    machine = machine_fields(results.fingerprint)
    return stable_hash(machine) if machine else "none"


def entry(fig: Figure, results: ResultsFile) -> dict:
    nums = figure_numbers(fig)
    extra = f"load {fig.load or '-'}; n={nums['n']}; gate {fig.run.get('gate') or '-'}; " \
            f"fingerprint {fingerprint_tag(fig, results)}"
    out = {"name": entry_name(fig), "unit": fig.metric.unit, "value": median(fig)}
    span = median_range(fig)
    return {**out, **({"range": span} if span else {}), "extra": extra}


def document(results: ResultsFile, fmt: str) -> list[dict]:
    """The entries of ``fmt``'s direction (names made unique with ``-2``, ``-3`` … when a file ran
    one series several times, e.g. A/B rounds)."""
    if not results.figures:
        raise ExportError(f"{results.path}: no figure to export"
                          + (f" ({'; '.join(results.skipped[:3])})" if results.skipped else ""))
    taken: set[str] = set()
    entries = [entry(fig, results) for fig in results.figures if fig.metric.direction == FORMATS[fmt]]
    for e in entries:
        e["name"] = _unique(e["name"], taken)
    return entries


__all__ = ["FORMATS", "document", "entry_name", "median", "median_range"]
