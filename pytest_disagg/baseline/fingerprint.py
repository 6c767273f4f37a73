"""What a baseline is valid for: the machine/software it was measured on and what was measured.

The fingerprint has two halves, kept apart because they answer different questions:

``machine`` — hardware and software that define "the same machine and software":
    ``gpu`` (model names, one per GPU), ``gpu_count``, ``driver``, ``cuda``, ``cpu`` (model),
    ``vllm``, ``torch``, ``nixl``, ``lmcache``, plus any field a user adds through
    ``pytest_disagg_update_fingerprint``. Its hash names the baseline directory
    (``baselines/<machine_hash>/``). A change here (a new vLLM, a new driver) gives the run a new
    fingerprint: it records a candidate instead of comparing, and ``pytest-disagg baselines
    history`` shows which of these fields changed between fingerprints. That is how the suite
    tracks a metric "across software and driver versions".

``subject`` — what is measured: hashes of the ``model`` config, the ``medium`` (deployment)
    config and the ``workload`` spec. Same machine but another subject means the stored baseline
    does not apply (the comparison would be between different experiments); the run is reported
    as a mismatch and records a candidate.

Hashes are short (12 hex digits of SHA-256 over canonical JSON) so that they read well in paths
and tables, yet collide only by accident with odds far below anything a baselines directory sees.
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..energy.nvmllib import gpu_info
from ..versions import PACKAGES, InterpreterError, package_version, probe, torch_cuda_version

MACHINE_FIELDS = ("gpu", "gpu_count", "driver", "cuda", "cpu", "vllm", "torch", "nixl", "lmcache")
SUBJECT_FIELDS = ("model", "medium", "workload")

HASH_LENGTH = 12


class FingerprintError(ValueError):
    """Extra fingerprint fields that cannot be stored (bad name or a value JSON cannot hold)."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal data always gives equal text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "__fspath__"):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}: {value!r}")


def stable_hash(value: Any, length: int = HASH_LENGTH) -> str:
    """Short SHA-256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Fingerprint:
    """The two halves and their hashes; stored in full in every baseline file."""

    machine: Mapping[str, Any]
    subject: Mapping[str, Any] = field(default_factory=dict)

    @property
    def machine_hash(self) -> str:
        return stable_hash(dict(self.machine))

    @property
    def subject_hash(self) -> str:
        return stable_hash(dict(self.subject))

    def to_json(self) -> dict:
        return {
            "machine": dict(self.machine),
            "subject": dict(self.subject),
            "machine_hash": self.machine_hash,
            "subject_hash": self.subject_hash,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Fingerprint":
        return cls(machine=dict(data["machine"]), subject=dict(data.get("subject", {})))


def machine_fields(fingerprint: Any) -> dict[str, Any]:
    """The machine half of a fingerprint: a results file may hold ``Fingerprint.to_json()``
    (``{"machine": {...}, "subject": ...}``) or the machine fields themselves."""
    if not isinstance(fingerprint, Mapping):
        return {}
    inner = fingerprint.get("machine")
    return dict(inner) if isinstance(inner, Mapping) else dict(fingerprint)


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs between two field maps: ``{name: (old, new)}``; absent is None."""
    names = sorted(set(old) | set(new))
    return {n: (old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)}


# --- machine half -------------------------------------------------------------------------------

def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's model name (the first ``model name`` line), or the platform's processor string."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return None


def interpreter_versions(python: str | Path, timeout_s: float = 60.0) -> dict[str, Any]:
    """vLLM, torch, NIXL, LMCache versions and torch's CUDA of *another* Python interpreter (the
    side B of an A/B run), as ``versions.probe`` reads them there."""
    try:
        found = probe(python, timeout_s)
    except InterpreterError as exc:
        raise InterpreterError(f"{python}: {exc}") from None
    return {**found["packages"], "cuda": found["cuda"]}


def machine_info(*, nvml: Any = None, cpuinfo: str | Path = "/proc/cpuinfo",
                 python: str | Path | None = None) -> dict[str, Any]:
    """The machine half, every field of ``MACHINE_FIELDS`` present (None when not applicable).

    ``cuda`` is the CUDA runtime torch (and so vLLM's kernels) was built with; on a machine with a
    GPU but a CPU-only torch it falls back to the driver's CUDA version from NVML. ``python``:
    read the software versions of that interpreter instead of this one (A/B side B).
    """
    gpus = gpu_info(nvml)
    software = interpreter_versions(python) if python is not None else {
        **{p: package_version(p) for p in PACKAGES}, "cuda": torch_cuda_version()}
    info: dict[str, Any] = {
        "gpu": gpus.get("gpu", []),
        "gpu_count": gpus.get("gpu_count", 0),
        "driver": gpus.get("driver"),
        "cuda": software.get("cuda") or gpus.get("cuda_driver"),
        "cpu": cpu_model(cpuinfo),
    }
    for package in PACKAGES:
        info[package] = software.get(package)
    return info


def with_extra(machine: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``machine`` plus user fields (the ``pytest_disagg_update_fingerprint`` hook's additions).

    User fields may add new names or replace built-in ones (e.g. to normalise a CPU string);
    names must be non-empty strings and values JSON-storable, checked here so that a bad hook
    implementation fails with its field named rather than deep inside the store.
    """
    out = dict(machine)
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name.strip():
            raise FingerprintError(f"fingerprint field names must be non-empty strings, got {name!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FingerprintError(f"fingerprint field {name!r}: value {value!r} is not JSON-storable ({exc})") from None
        out[name] = value
    return out


# --- subject half -------------------------------------------------------------------------------

def subject_info(*, model: Any = None, medium: Any = None, workload: Any = None) -> dict[str, str | None]:
    """Hashes of the model config, the medium/deployment config and the workload spec; plus the
    KV-cache dtype, readable, when the deployment config sets one other than ``auto`` (a quantised
    KV cache is another experiment; absent otherwise, so earlier subjects keep their hash)."""
    subject = {
        "model": None if model is None else stable_hash(model),
        "medium": None if medium is None else stable_hash(medium),
        "workload": None if workload is None else stable_hash(workload),
    }
    kv_cache_dtype = medium.get("kv_cache_dtype") if isinstance(medium, Mapping) else None
    if kv_cache_dtype not in (None, "auto"):
        subject["kv_cache_dtype"] = kv_cache_dtype
    return subject


def collect(*, model: Any = None, medium: Any = None, workload: Any = None,
            extra: Mapping[str, Any] | None = None, machine: Mapping[str, Any] | None = None,
            nvml: Any = None) -> Fingerprint:
    """A full fingerprint. ``machine`` may be passed in when already collected (it is per session)."""
    base = machine if machine is not None else machine_info(nvml=nvml)
    return Fingerprint(machine=with_extra(base, extra),
                       subject=subject_info(model=model, medium=medium, workload=workload))


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One short line for tables: GPUs (or CPU), driver, vLLM."""
    gpus = machine.get("gpu") or []
    if gpus:
        hw = f"{len(gpus)}x {gpus[0]}" if len(set(gpus)) == 1 else " + ".join(gpus)
    else:
        hw = machine.get("cpu") or "unknown CPU"
    parts = [hw]
    if machine.get("driver"):
        parts.append(f"driver {machine['driver']}")
    if machine.get("vllm"):
        parts.append(f"vLLM {machine['vllm']}")
    return ", ".join(parts)


__all__ = [
    "Fingerprint", "FingerprintError", "InterpreterError", "MACHINE_FIELDS", "PACKAGES", "interpreter_versions", "SUBJECT_FIELDS", "canonical_json",
    "changed_fields", "collect", "machine_fields", "cpu_model", "describe_machine", "gpu_info", "machine_info",
    "package_version", "stable_hash", "subject_info", "torch_cuda_version", "with_extra",
]
