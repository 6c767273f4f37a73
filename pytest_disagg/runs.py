"""Every session's results kept, one directory per run: ``.disagg/runs/<id>/results.json``.

Why: without ``--disagg-json`` a session's figures used to be gone once the terminal scrolled,
so there was nothing to compare the next run with. pytest-benchmark autosaves each run under
``.benchmarks/`` in the rootdir; this does the same for the suite's results document (the one
``--disagg-json`` writes, byte for byte), and ``pytest-disagg compare`` reads it back by id.

An id is the session's UTC time and the first 8 hex digits of its machine fingerprint hash,
``20261207T213000Z-3f2a9c1d``: sorted by name is sorted by time, and runs of one machine share
the tail. A second session in the same second on the same machine gets ``…-2``. The directory and
its file are made with SIGINT/SIGTERM held (``files.held_signals``), the file atomically, so an
interrupted session leaves a whole run or none.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

from .files import held_signals
from .results import SessionResults

RUNS_DIR = Path(".disagg") / "runs"      # under the rootdir (the session) / found from the cwd up (compare)
RESULTS_NAME = "results.json"
NAMED = {"latest": -1, "previous": -2}   # ids counted from the newest run


class RunsError(ValueError):
    """A run reference that names no run (one line: what was given and what exists)."""


def run_id(document: dict) -> str:
    """``<UTC time of the document>-<8 hex of its machine fingerprint hash>``."""
    created = _dt.datetime.fromisoformat(str(document["created"])).astimezone(_dt.timezone.utc)
    fingerprint = document.get("fingerprint") or {}
    digest = fingerprint.get("machine_hash") or hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()
    return f"{created:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def save(results: SessionResults, document: dict, root: Path) -> Path:
    """Write ``document`` as a new run under ``root``; returns its ``results.json``."""
    with held_signals():
        directory = _new_directory(Path(root), run_id(document))
        path = directory / RESULTS_NAME
        try:
            results.write(path, document)
        except BaseException:
            directory.rmdir()
            raise
    return path


def _new_directory(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        directory = root / (name if n == 1 else f"{name}-{n}")
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        return directory
    raise RunsError(f"{root}: 999 runs named {name}* already; remove some")


def find_root(start: Path) -> Path | None:
    """The nearest ``.disagg/runs`` in ``start`` or a directory above it (as git finds ``.git``)."""
    start = Path(start).resolve()
    for directory in (start, *start.parents):
        if (directory / RUNS_DIR).is_dir():
            return directory / RUNS_DIR
    return None


def run_ids(root: Path) -> list[str]:
    """The runs kept under ``root``, oldest first (directories holding a results file)."""
    return sorted(p.name for p in Path(root).iterdir() if (p / RESULTS_NAME).is_file())


def resolve(ref: str, root: Path | None) -> Path:
    """The results file ``ref`` names: a results JSON file, a run directory, or a run id under
    ``root`` (a unique prefix, ``latest`` or ``previous``)."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / RESULTS_NAME).is_file():
            return path / RESULTS_NAME
        raise RunsError(f"{ref}: a directory without {RESULTS_NAME}; give a run id, a run directory or a "
                        "results JSON file")
    if "/" in ref or ref.endswith(".json"):
        raise RunsError(f"{ref}: no such results file or run directory")
    if root is None:
        raise RunsError(f"{ref}: no such file, and no {RUNS_DIR} here or above to look a run id up in")
    return Path(root) / _lookup(ref, root) / RESULTS_NAME


def _lookup(ref: str, root: Path) -> str:
    if not Path(root).is_dir():
        raise RunsError(f"{ref}: no such file, and {root} (where run ids are looked up) is no directory")
    ids = run_ids(root)
    if ref in NAMED:
        if len(ids) < -NAMED[ref]:
            raise RunsError(f"{ref}: {len(ids)} run(s) under {root}, so there is no {ref} run")
        return ids[NAMED[ref]]
    hits = [i for i in ids if i.startswith(ref)]
    if len(hits) == 1 or ref in hits:
        return ref if ref in hits else hits[0]
    if hits:
        raise RunsError(f"run {ref!r} is ambiguous under {root}: {', '.join(hits)}")
    newest = ", ".join(ids[-3:]) or "none"
    raise RunsError(f"unknown run {ref!r} under {root}; newest: {newest}")


__all__ = ["NAMED", "RESULTS_NAME", "RUNS_DIR", "RunsError", "find_root", "resolve", "run_id", "run_ids", "save"]
