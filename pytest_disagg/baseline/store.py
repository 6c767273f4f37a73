"""The ``baselines/`` directory: one JSON file per benchmark per machine fingerprint.

Layout::

    baselines/<machine_hash>/<benchmark>.json               committed baselines
    baselines/.candidates/<machine_hash>/<benchmark>.json   runs that had no baseline to meet

Why this shape: a directory per machine fingerprint keeps the baselines of a CPU box, an H100
and an H200 apart and lets ``history`` line them up; a file per benchmark keeps a refresh's diff
to the benchmarks that changed. Candidates sit apart so that a run without a baseline never
creates one by itself — a person promotes them (``pytest-disagg baselines refresh``).

Writes are atomic (a temp file in the same directory, then ``os.replace``): a reader, or a run
killed mid-write, sees the old file or the new one, never half of one. Writers take the store's
lock (``filelock`` on ``<root>/.lock``), so ``pytest -n`` workers and concurrent jobs do not race
on the "create if absent" decision. A file that exists but cannot be read is an error naming it, and is
never overwritten unless a refresh is asked for.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..files import atomic_write
from . import document, jsonfmt
from .document import BaselineError

CANDIDATES = ".candidates"
LOCK_TIMEOUT_S = 120.0
_MAX_NAME = 150
_HASH_RE = re.compile(r"^[0-9a-f]{6,64}$")


class BaselineExists(BaselineError):
    """A baseline is already stored and no refresh was asked for."""


def file_name(benchmark: str) -> str:
    """A portable file name for a benchmark id; ids that had to be changed keep a short hash.

    ``::`` becomes ``.``; characters outside ``[A-Za-z0-9._=+,@[]-]`` become ``_``. When that
    changed anything beyond ``::``, or the name is very long, 8 hex digits of the id's hash are
    appended, so two ids that clean up to the same text cannot share a file.
    """
    if not benchmark or not benchmark.strip():
        raise ValueError("a benchmark id must be a non-empty string")
    plain = benchmark.replace("::", ".")
    clean = re.sub(r"[^A-Za-z0-9._=+,@\[\]-]", "_", plain).lstrip(".") or "_"
    if clean != plain or len(clean) > _MAX_NAME:
        clean = f"{clean[:_MAX_NAME]}-{hashlib.sha256(benchmark.encode()).hexdigest()[:8]}"
    return clean + ".json"


LOCK_NAME = ".lock"


def matches(pattern: str, *names: str) -> bool:
    """Shell-style ``*`` and ``?`` on benchmark ids; brackets are literal, because pytest ids are
    full of them (``test_x[nixl-cpu-pc0]``) and a character class would silently match nothing."""
    regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")
    return any(regex.match(n) for n in names)


def _lock_for(root: Path) -> FileLock:
    """One lock per store, ``<root>/.lock``: beside the data it guards (so it also serialises
    writers on other hosts sharing the directory), hidden from listings, never committed."""
    root.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / LOCK_NAME), timeout=LOCK_TIMEOUT_S)


def read_document(path: Path) -> dict:
    """Read and validate one file; every problem is a :class:`BaselineError` naming it."""
    data = jsonfmt.read_json(path, BaselineError, hint="refresh it or restore it from git")
    return document.validate(data, str(path))


@dataclass(frozen=True)
class Entry:
    """One file of the store as listed: its document, or the error that keeps it from being read."""

    machine_hash: str
    path: Path
    candidate: bool
    doc: dict | None = None
    error: str | None = None

    @property
    def benchmark(self) -> str:
        return self.doc["benchmark"] if self.doc else self.path.stem


class BaselineStore:
    def __init__(self, root: str | Path = "baselines", candidates: str | Path | None = None):
        self.root = Path(root)
        self.candidates_root = Path(candidates) if candidates is not None else self.root / CANDIDATES

    # --- paths ------------------------------------------------------------------------------
    def _dir(self, base: Path, machine_hash: str) -> Path:
        if not _HASH_RE.match(machine_hash or ""):
            raise ValueError(f"not a fingerprint hash: {machine_hash!r}")
        return base / machine_hash

    def path(self, machine_hash: str, benchmark: str) -> Path:
        return self._dir(self.root, machine_hash) / file_name(benchmark)

    def candidate_path(self, machine_hash: str, benchmark: str) -> Path:
        return self._dir(self.candidates_root, machine_hash) / file_name(benchmark)

    # --- reading ----------------------------------------------------------------------------
    def load(self, machine_hash: str, benchmark: str) -> dict | None:
        """The stored baseline, None when there is none; a bad file is a :class:`BaselineError`."""
        path = self.path(machine_hash, benchmark)
        if not path.exists():
            return None
        doc = read_document(path)
        if doc["benchmark"] != benchmark:
            raise BaselineError(f"{path}: holds benchmark {doc['benchmark']!r}, not {benchmark!r}")
        return doc

    def entries(self, *, candidates: bool = False) -> Iterator[Entry]:
        """Every file of the baselines (or the candidates), readable or not, in a stable order."""
        base = self.candidates_root if candidates else self.root
        if not base.is_dir():
            return
        for machine_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(p for p in machine_dir.glob("*.json") if not p.name.startswith(".")):
                try:
                    yield Entry(machine_dir.name, path, candidates, doc=read_document(path))
                except BaselineError as exc:
                    yield Entry(machine_dir.name, path, candidates, error=str(exc))

    # --- writing ----------------------------------------------------------------------------
    def _locked(self):
        """The store's lock, with its failures as :class:`BaselineError`s naming the directory."""
        try:
            lock = _lock_for(self.root)
            lock.acquire()
        except Timeout:
            raise BaselineError(f"{self.root / LOCK_NAME}: could not take the baselines lock within "
                                f"{LOCK_TIMEOUT_S:.0f} s (another run holds it)") from None
        except OSError as exc:
            raise _unwritable(self.root, exc) from None
        return lock

    def _put(self, path: Path, text: str, *, replace: bool) -> None:
        """Write under the lock the caller holds."""
        if path.exists() and not replace:
            raise BaselineExists(f"{path}: a baseline is already stored; pass refresh to replace it")
        try:
            atomic_write(path, text)
        except OSError as exc:
            raise _unwritable(path.parent, exc) from None

    def _write(self, path: Path, doc: dict, *, replace: bool) -> Path:
        document.validate(doc, f"document for {path}")   # never write what could not be read back
        text = jsonfmt.dumps(doc)
        lock = self._locked()
        try:
            self._put(path, text, replace=replace)
        finally:
            lock.release()
        return path

    def save(self, doc: dict, *, refresh: bool = False) -> Path:
        """Store ``doc`` as the baseline; an existing file (even a corrupt one) only with ``refresh``."""
        path = self.path(doc["fingerprint"]["machine_hash"], doc["benchmark"])
        return self._write(path, doc, replace=refresh)

    def save_candidate(self, doc: dict) -> Path:
        """Record a run that had no baseline (a newer candidate replaces an older one)."""
        path = self.candidate_path(doc["fingerprint"]["machine_hash"], doc["benchmark"])
        return self._write(path, doc, replace=True)

    def promote(self, patterns: list[str] | None = None, *, dry_run: bool = False) -> list[tuple[Path, Path]]:
        """Make candidates baselines: all, or those whose benchmark id, file name or fingerprint
        hash matches one of ``patterns`` (shell-style). Unreadable candidates are errors, not skipped.
        Returns ``(candidate, baseline)`` path pairs, promoted unless ``dry_run``."""
        chosen = []
        for entry in self.entries(candidates=True):
            names = (entry.benchmark, entry.path.stem, entry.path.name, entry.machine_hash,
                     f"{entry.machine_hash}/{entry.benchmark}")
            if patterns and not any(matches(p, *names) for p in patterns):
                continue
            if entry.error:
                raise BaselineError(entry.error)
            chosen.append((entry, self.path(entry.doc["fingerprint"]["machine_hash"], entry.benchmark)))
        if dry_run or not chosen:
            return [(entry.path, target) for entry, target in chosen]
        done = []
        lock = self._locked()
        try:   # read, write and unlink under one lock: a candidate written meanwhile is never lost
            for entry, target in chosen:
                if not entry.path.exists():              # another run promoted it meanwhile
                    continue
                doc = read_document(entry.path)          # the candidate as it is now
                self._put(target, jsonfmt.dumps(doc), replace=True)
                entry.path.unlink()
                done.append((entry.path, target))
        finally:
            lock.release()
        return done


def _unwritable(where: Path, exc: OSError) -> BaselineError:
    return BaselineError(f"{where}: the baselines directory cannot be written ({exc.strerror or exc}); make it "
                         "writable, point --disagg-baselines-dir at a writable copy, or run with --disagg-baseline=off")


__all__ = ["BaselineError", "BaselineExists", "BaselineStore", "CANDIDATES", "Entry",
           "file_name", "matches", "read_document"]
