"""The session's results: every run a test made, as one JSON document and a terminal summary.

The JSON is the only thing the report reads (data flows one way), so it carries everything a
plot or table needs: the deployment's config, the fingerprint, per-run summaries with CIs, the
server-metric deltas, energy, and the baseline verdicts.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

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
    ("J/tok", ("energy", "j_per_token"), "{:.4f}"),
    ("valid", ("validity",), "{}"),
    ("gate", ("gate",), "{}"),
)


def _dig(data: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


@dataclass
class SessionResults:
    """Collects runs during the session; written once at the end."""

    runs: list[dict] = field(default_factory=list)
    deployments: dict[str, dict] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def add_run(self, *, benchmark: str, test: str, deployment, run, load: str = "", extra: dict | None = None,
                energy: dict | None = None, verdicts: list[dict] | None = None) -> dict:
        """Record one workload run against one deployment; returns the stored entry."""
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
            **{k: data.get(k) for k in ("workload", "workload_hash", "summary", "scalars", "server_metrics",
                                         "n_ok", "n_failed", "stages", "wall_s") if k in data},
            "energy": energy if energy is not None else data.get("energy"),
            "verdicts": verdicts or [],
            "gate": _gate_word(verdicts or []),
            "extra": extra or {},
        }
        self.runs.append(entry)
        return entry

    def set_verdicts(self, entry: dict, verdicts: list[dict]) -> None:
        entry["verdicts"] = verdicts
        entry["gate"] = _gate_word(verdicts)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": self.fingerprint,
            "options": self.options,
            "deployments": self.deployments,
            "runs": self.runs,
            "derived": self.derived,
        }

    def write(self, path: Path, document: dict | None = None) -> None:
        """Atomic: a crash mid-write never leaves a truncated results file behind."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(document if document is not None else self.to_json(), fh, indent=1, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)

    def summary_tables(self) -> list[tuple[str, str]]:
        """One compact table per benchmark: (title, text)."""
        from tabulate import tabulate

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


def _gate_word(verdicts: list[dict]) -> str:
    if not verdicts:
        return "-"
    words = {v.get("verdict", "?") for v in verdicts}
    for word in ("regression", "candidate", "improvement", "inconclusive", "ok"):
        if word in words:
            return word
    return sorted(words)[0]


def load_results(path: Path) -> dict:
    """Read a results JSON, with an error that names the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); was the run interrupted?") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a pytest-disagg results file of schema {SCHEMA_VERSION}")
    return data
