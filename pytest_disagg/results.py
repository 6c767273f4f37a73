"""The session's results: every run a test made, as one JSON document and a terminal summary.

The JSON is the only thing the report reads (data flows one way), and this module is the one
owner of its shape: it defines and writes it, and :func:`load_results` reads it back (older
schemas upgraded in memory). Schema 2, top level:

``schema_version`` 2; ``created`` (UTC, ISO 8601);
``fingerprint``  the session's fingerprint, the same one baselines use
                 (``baseline.fingerprint.Fingerprint.to_json()``: ``machine`` = GPU/CPU model and
                 count, driver, CUDA, vLLM, torch, NIXL, LMCache versions (+ hook fields);
                 ``subject`` empty at session level; ``machine_hash``);
``options``      the suite's options of the session;
``deployments``  ``{key: deployment.to_json()}``;
``runs``         one entry per measured run (below);
``ab``           A/B pairs, ``[]`` unless ``--disagg-ab`` ran (h15b's ``pytest_disagg/ab/`` fills it):
                 ``{"benchmark", "deployment", "metric", "rounds", "a_runs": [run indices],
                 "b_runs": [run indices], "ratio", "ci": [lo, hi], "confidence", "tolerance",
                 "verdict" (a word of pytest_disagg.verdicts), "fingerprint_a", "fingerprint_b",
                 "noise" (round-to-round SD of log B/A), "resolves" (smallest change its rounds call
                 with 95 % power, null: none yet), "rounds_needed" (for a 5 % change)}``
                 — :meth:`SessionResults.add_ab_pair` checks the required keys and the word;
``derived``      session-level figures: ``crossover`` ``{deployment key: crossing}``
                 (:meth:`add_crossover`), ``capacity``, ``saturation_probe``, ``dvfs_points``
                 ``[...]`` (:meth:`add_dvfs_point`), ``deployment_starts``.

A run entry: ``benchmark``, ``test``, ``deployment``, ``setup``, ``medium``, ``prefix_caching``,
``device``, ``load``, ``workload``, ``workload_hash``, ``summary`` (per metric: n, mean, p50 ...,
``ci``), ``scalars``, ``server_metrics``, ``n_ok``, ``n_failed``, ``stages``, ``wall_s``,
``warmup`` (requests before the measured phase), ``energy`` (one typed record,
``energy.attribution.Attribution.record()``: stages, host, totals, ``joules_per_token``,
``joules_per_request``, ``components`` {component: joules, j_per_token, share | unavailable},
``scalars``; or None), ``verdicts`` (the gate's per-metric verdicts, words of
:mod:`pytest_disagg.verdicts`), ``gate`` (their worst word, "-" when not gated), ``fingerprint``
(this run's full fingerprint: machine of the interpreter that served it — side B's in A/B — and
subject hashes of model, medium config and workload), ``valid`` + ``invalid_reasons`` (validity
rules, ``pytest_disagg.validity``), ``side`` ("A"/"B", A/B mode only), ``extra``.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tabulate import tabulate

from . import verdicts as words
from .files import atomic_write, held_signals, new_file_mode

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)      # schema 1 files (docs/*/results.json) are upgraded when read

# Columns of the terminal summary: (header, path into a run's JSON, format)
SUMMARY_COLUMNS = (
    ("set-up", ("setup",), "{}"),
    ("load", ("load",), "{}"),
    ("n", ("n_ok",), "{}"),
    ("fail", ("n_failed",), "{}"),
    ("TTFT p50 ms", ("summary", "ttft_ms", "p50"), "{:.1f}"),
    ("TPOT p50 ms", ("summary", "tpot_ms", "p50"), "{:.2f}"),
    ("E2E p50 ms", ("summary", "e2el_ms", "p50"), "{:.0f}"),
    ("out tok/s", ("scalars", "output_throughput"), "{:.1f}"),
    ("J/tok", ("energy", "joules_per_token"), "{:.4f}"),
    ("valid", ("validity",), "{}"),
    ("gate", ("gate",), "{}"),
)
RUN_FIELDS = ("workload", "workload_hash", "summary", "scalars", "server_metrics", "n_ok", "n_failed", "stages",
              "wall_s")
AB_REQUIRED = ("benchmark", "deployment", "metric", "ratio", "ci", "verdict")


class ResultsError(ValueError):
    """A results file or entry that cannot be used; the message names it and what is wrong."""


def _dig(data: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def gate_word(verdicts: list[dict]) -> str:
    """The worst verdict word of a run's verdicts ("-" when the run was not gated)."""
    return words.worst((v.get("verdict", words.NOT_COMPARED) for v in verdicts), empty="-")


@dataclass
class SessionResults:
    """Collects runs during the session; written once at the end."""

    runs: list[dict] = field(default_factory=list)
    deployments: dict[str, dict] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    ab: list[dict] = field(default_factory=list)

    def add_run(self, *, benchmark: str, test: str, deployment, run, load: str = "", extra: dict | None = None,
                energy: dict | None = None, verdicts: list[dict] | None = None,
                fingerprint: Mapping[str, Any] | None = None, side: str | None = None) -> dict:
        """Record one workload run against one deployment; returns the stored entry.

        ``fingerprint``: the run's full fingerprint (``Fingerprint.to_json()``); ``side``: "A" or
        "B" in A/B mode. ``verdicts`` may be given later with :meth:`set_verdicts`."""
        data = run.to_json() if hasattr(run, "to_json") else dict(run)
        self.deployments.setdefault(deployment.key, deployment.to_json())
        cfg = deployment.config
        entry = {
            "benchmark": benchmark,
            "test": test,
            "deployment": deployment.key,
            "setup": cfg.label or deployment.medium.name,
            "medium": deployment.medium.name,
            "prefix_caching": cfg.prefix_caching,
            "device": cfg.device,
            "load": load,
            **{k: data.get(k) for k in RUN_FIELDS if k in data},
            "warmup": (data.get("workload") or {}).get("warmup", data.get("n_warmup", 0)),
            "energy": energy if energy is not None else data.get("energy"),
            "fingerprint": dict(fingerprint or {}),
            "valid": True,
            "invalid_reasons": [],
            "samples": _samples(run, data),
            "extra": extra or {},
        }
        if side is not None:
            if side not in ("A", "B"):
                raise ResultsError(f"side must be 'A' or 'B', got {side!r}")
            entry["side"] = side
        self.set_verdicts(entry, verdicts or [])
        self.runs.append(entry)
        return entry

    def set_verdicts(self, entry: dict, verdicts: list[dict]) -> None:
        """A run's gate verdicts (words normalised to the vocabulary) and their worst word."""
        entry["verdicts"] = [{**v, "verdict": words.normalize(v.get("verdict", words.NOT_COMPARED))}
                             for v in verdicts]
        entry["gate"] = gate_word(entry["verdicts"])

    def add_ab_pair(self, pair: Mapping[str, Any]) -> dict:
        """One A/B comparison (shape in the module docstring); its ``verdict`` must be a vocabulary word."""
        missing = [k for k in AB_REQUIRED if k not in pair]
        if missing:
            raise ResultsError(f"A/B pair lacks {', '.join(missing)} (needs {', '.join(AB_REQUIRED)})")
        stored = {**pair, "verdict": words.normalize(pair["verdict"])}
        self.ab.append(stored)
        return stored

    def add_crossover(self, key: str, crossing: Mapping[str, Any]) -> None:
        """Where a deployment's curve crosses colocated's (``sweep.crossover`` output, or a note)."""
        self.derived.setdefault("crossover", {})[key] = dict(crossing)

    def add_dvfs_point(self, point: Mapping[str, Any]) -> None:
        """One clock setting's figures (deployment, point id, clocks, latency, J/token)."""
        self.derived.setdefault("dvfs_points", []).append(dict(point))

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint,
            "options": self.options,
            "deployments": self.deployments,
            "runs": self.runs,
            "ab": self.ab,
            "derived": self.derived,
        }

    def write(self, path: Path, document: dict | None = None) -> None:
        """Atomic: a crash mid-write never leaves a truncated results file behind, and a Ctrl-C or
        SIGTERM that arrives during the write is held until the file is in place. The file is
        readable by others (0644 under umask 022), as the report and exports it feeds are."""
        text = json.dumps(document if document is not None else self.to_json(), indent=1, sort_keys=True,
                          default=str) + "\n"
        with held_signals():
            atomic_write(path, text, file_mode=new_file_mode())

    def summary_tables(self) -> list[tuple[str, str]]:
        """One compact table per benchmark: (title, text)."""
        by_bench: dict[str, list[dict]] = {}
        for run in self.runs:
            by_bench.setdefault(run["benchmark"], []).append(run)
        out = []
        for bench, runs in by_bench.items():
            rows = []
            for run in runs:
                row = []
                for _, path, fmt in SUMMARY_COLUMNS:
                    value = _dig(run, path)
                    row.append("-" if value is None else (fmt.format(value) if not isinstance(value, str) else value))
                rows.append(row)
            out.append((bench, tabulate(rows, headers=[c[0] for c in SUMMARY_COLUMNS], tablefmt="simple")))
        return out


# --- reading ---------------------------------------------------------------------------------

def _upgrade_energy(energy: Any) -> Any:
    """Schema 1's energy spellings (``by_component`` / ``per_component``, ``j_per_token``) → the record's."""
    if not isinstance(energy, dict):
        return energy
    out = dict(energy)
    for old in ("by_component", "per_component"):
        if old in out:
            out.setdefault("components", out.pop(old))
    if "j_per_token" in out:
        out.setdefault("joules_per_token", out.pop("j_per_token"))
    return out


def upgrade(data: dict) -> dict:
    """A schema 1 document in the schema 2 shape (a new dict; the input is left as it was).

    What schema 1 could not know stays empty and says so: runs get ``fingerprint: {}``, ``valid``
    true; old verdict words are mapped onto the vocabulary."""
    if data.get("schema_version") == SCHEMA_VERSION:
        return data
    out = {**data, "schema_version": SCHEMA_VERSION, "upgraded_from": data.get("schema_version"),
           "ab": list(data.get("ab") or [])}
    runs = []
    for run in data.get("runs") or []:
        if not isinstance(run, dict):
            runs.append(run)
            continue
        new = {**run, "energy": _upgrade_energy(run.get("energy"))}
        verdicts = [{**v, "verdict": words.normalize(v["verdict"])} if isinstance(v, dict) and "verdict" in v else v
                    for v in run.get("verdicts") or []]
        new["verdicts"] = verdicts
        new["gate"] = gate_word([v for v in verdicts if isinstance(v, dict)])
        new.setdefault("fingerprint", {})
        new.setdefault("valid", True)
        new.setdefault("invalid_reasons", [])
        runs.append(new)
    out["runs"] = runs
    return out


def _samples(run, data: dict) -> dict[str, list[float]]:
    """The per-request samples behind ``summary`` (ms, to the microsecond, as baselines keep them):
    what exports need to give other tools real distributions, not summaries."""
    raw = run.samples() if hasattr(run, "samples") else data.get("samples") or {}
    return {name: [round(float(v), 3) for v in values] for name, values in raw.items()}




def load_results(path: Path) -> dict:
    """Read a results JSON (schema 1 or 2; schema 1 upgraded), with an error that names the file."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path}: is a directory; give a results JSON file (written by --disagg-json)")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); was the run interrupted?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot be read as a results JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema_version") not in READABLE_SCHEMAS or "runs" not in data:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise ResultsError(f"{path}: not a pytest-disagg results file of schema "
                           f"{' or '.join(map(str, READABLE_SCHEMAS))} (schema_version={found!r})")
    data = upgrade(data)
    check_numbers(data, str(path))
    return data


# Run fields, and fields of a run's ``energy`` record, that hold a number (or null) when present.
RUN_NUMBERS = ("n_ok", "n_failed", "wall_s", "warmup")
ENERGY_NUMBERS = ("joules_per_token", "joules_per_request", "total_joules", "gpu_joules", "seconds",
                  "counter_period_s", "output_tokens", "prompt_tokens", "requests")


def check_numbers(data: dict, source: str) -> None:
    """A :class:`ResultsError` naming the file, the run and the field where a number is expected
    and something else is stored. Why at load time: a string there (``"p50": "fast"``) reached the
    report as a silent "-" and ``baselines history`` as float()'s message, with no file named."""
    for i, run in enumerate(data.get("runs") or []):
        if not isinstance(run, dict):
            continue
        for where, value in _numeric_fields(run):
            if not _is_number(value):
                test = run.get("test") or run.get("benchmark") or "?"
                raise ResultsError(f"{source}: runs[{i}] ({test}): {where} is {value!r}, not a number")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _numeric_fields(run: dict):
    """(field path, value) of every place of a run that holds a number."""
    yield from ((key, run[key]) for key in RUN_NUMBERS if key in run)
    for name, summary in _mapping(run.get("summary")).items():
        for stat, value in _mapping(summary).items():
            if stat == "ci":
                for q, pair in _mapping(value).items():
                    yield from ((f"summary.{name}.ci.{q}[{j}]", v) for j, v in enumerate(_items(pair)))
            else:
                yield f"summary.{name}.{stat}", value
    yield from ((f"scalars.{name}", value) for name, value in _mapping(run.get("scalars")).items())
    for name, values in _mapping(run.get("samples")).items():
        yield from ((f"samples.{name}[{j}]", v) for j, v in enumerate(_items(values)))
    energy = _mapping(run.get("energy"))
    yield from ((f"energy.{key}", energy[key]) for key in ENERGY_NUMBERS if key in energy)


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list:
    return value if isinstance(value, list) else [value]


__all__ = ["AB_REQUIRED", "READABLE_SCHEMAS", "RUN_FIELDS", "SCHEMA_VERSION", "SUMMARY_COLUMNS", "ResultsError",
           "SessionResults", "check_numbers", "gate_word", "load_results", "upgrade"]
