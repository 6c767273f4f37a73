"""Access to NVML: loading the binding, sessions, handles, error codes, and a read-only view.

Why a module of its own: the meter and the clock controller both talk to NVML, and both must be
testable against a fake binding (``tests/fake_nvml.py``) passed in as ``nvml=``. Keeping the
loading, the error-code helpers and the read-only guard here means neither has its own copy, and
the one place that decides "may this code change the GPU?" is :class:`ReadOnlyNvml`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterable

# Codes from nvml.h; the binding exposes them too, but a fake or an old binding may not.
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4

# Clock-event ("throttle") reason bits from nvml.h, named for the timeline.
THROTTLE_REASON_BITS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

# Names a read-only view lets through; everything else starting with "nvml" is refused.
_READ_ONLY_PREFIXES = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlDeviceGet",
    "nvmlSystemGet",
    "nvmlUnitGet",
)


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here (binding missing, no driver, no GPU); ``str()`` says why."""


def load(nvml: Any = None) -> Any:
    """Return the NVML binding: the one given (a fake in tests) or ``pynvml`` from nvidia-ml-py."""
    if nvml is not None:
        return nvml
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailable(
            "the NVML binding is not installed (pip install nvidia-ml-py; import name pynvml)"
        ) from exc


def error_code(exc: BaseException) -> int | None:
    """NVML's numeric error code of an exception from the binding, else None."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def is_nvml_error(nvml: Any, exc: BaseException) -> bool:
    """True when ``exc`` was raised by the binding (its ``NVMLError`` family)."""
    base = getattr(nvml, "NVMLError", None)
    return isinstance(base, type) and isinstance(exc, base)


def describe_error(nvml: Any, exc: BaseException) -> str:
    """A one-line text for an NVML error: the binding's message and the code."""
    code = error_code(exc)
    return f"{exc} (NVML error {code})" if code is not None else str(exc)


def decode_throttle_reasons(mask: int | None) -> tuple[str, ...]:
    """Names of the clock-event reason bits set in ``mask`` (unknown bits as hex)."""
    if mask is None:
        return ()
    names = [name for bit, name in THROTTLE_REASON_BITS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_REASON_BITS:
        known |= bit
    rest = mask & ~known
    if rest:
        names.append(hex(rest))
    return tuple(names)


def is_read_only_call(name: str) -> bool:
    """True for binding names a read-only user may call (and for every non-function name)."""
    return not name.startswith("nvml") or name.startswith(_READ_ONLY_PREFIXES)


class ReadOnlyNvml:
    """A view of an NVML binding that refuses every call able to change a GPU.

    Why: the meter and the dry-run clock path must be incapable of touching clocks, power limits or
    modes, on lent machines above all. An allow-list (init, shutdown, ``nvmlDeviceGet*``,
    ``nvmlSystemGet*``) is safer than a deny-list, because a new setter in a later binding is
    refused by default. Constants and exception classes pass through unchanged.
    """

    def __init__(self, nvml: Any):
        object.__setattr__(self, "_nvml", nvml)

    def __getattr__(self, name: str) -> Any:
        if not is_read_only_call(name):
            raise PermissionError(f"read-only NVML view: refusing {name}")
        return getattr(self._nvml, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ReadOnlyNvml is immutable")


def read_only(nvml: Any) -> Any:
    """Wrap ``nvml`` in :class:`ReadOnlyNvml` unless it already is one."""
    return nvml if isinstance(nvml, ReadOnlyNvml) else ReadOnlyNvml(nvml)


@dataclass(frozen=True)
class GpuIdentity:
    """What names a GPU in results: NVML index, product name and UUID (when readable)."""

    index: int
    name: str
    uuid: str | None


class NvmlSession:
    """An initialised NVML and the handles of some GPUs; ``close()`` shuts NVML down once.

    NVML's init/shutdown are reference counted by the library, so several sessions (a meter and a
    clock controller) may be open at the same time.
    """

    def __init__(self, nvml: Any, gpu_indices: Iterable[int]):
        self.nvml = nvml
        indices = tuple(gpu_indices)
        _check_indices(indices)
        try:
            nvml.nvmlInit()
        except Exception as exc:  # the binding raises NVMLError subclasses; a fake may too
            if is_nvml_error(nvml, exc):
                raise NvmlUnavailable(f"NVML could not start: {describe_error(nvml, exc)}") from exc
            raise
        self._open = True
        try:
            count = nvml.nvmlDeviceGetCount()
            missing = [i for i in indices if i >= count]
            if missing:
                raise ValueError(
                    f"GPU index(es) {missing} not present: NVML sees {count} GPU(s) "
                    f"(indices are NVML's physical indices, not CUDA_VISIBLE_DEVICES positions)"
                )
            self.handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in indices}
            self.identities = {i: self._identity(i) for i in indices}
        except BaseException:
            self.close()
            raise

    def _identity(self, index: int) -> GpuIdentity:
        handle = self.handles[index]
        name = as_text(self.nvml.nvmlDeviceGetName(handle))
        try:
            uuid: str | None = as_text(self.nvml.nvmlDeviceGetUUID(handle))
        except Exception as exc:
            if not is_nvml_error(self.nvml, exc) and not isinstance(exc, AttributeError):
                raise
            uuid = None
        return GpuIdentity(index=index, name=name, uuid=uuid)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.nvml.nvmlShutdown()


def device_count(nvml: Any = None) -> int:
    """Number of GPUs NVML sees; raises :class:`NvmlUnavailable` when NVML cannot start."""
    lib = read_only(load(nvml))
    session = NvmlSession(lib, ())
    try:
        return int(lib.nvmlDeviceGetCount())
    finally:
        session.close()


def all_gpus(nvml: Any = None) -> tuple[int, ...]:
    """Indices of every GPU NVML sees; :class:`NvmlUnavailable` when NVML cannot start or sees none."""
    count = device_count(nvml)
    if count == 0:
        raise NvmlUnavailable("NVML sees no GPU")
    return tuple(range(count))


def _check_indices(indices: tuple[int, ...]) -> None:
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"GPU indices must be non-negative ints, got {i!r}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"GPU indices repeat: {indices}")


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info(nvml: Any = None) -> dict[str, Any]:
    """GPU names and count, driver and the driver's CUDA version from NVML; empty without GPUs.

    No NVML binding, no driver, or no GPU all mean "no GPU fields" rather than an error: the CPU
    build of the suite fingerprints the CPU instead.
    """
    try:
        lib = read_only(load(nvml))
        session = NvmlSession(lib, ())
    except NvmlUnavailable:
        return {}
    try:
        count = int(lib.nvmlDeviceGetCount())
        if count == 0:
            return {}
        names = [as_text(lib.nvmlDeviceGetName(lib.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        info: dict[str, Any] = {"gpu": names, "gpu_count": count}
        info["driver"] = _nvml_optional(lib, "nvmlSystemGetDriverVersion")
        cuda = _nvml_optional(lib, "nvmlSystemGetCudaDriverVersion")
        info["cuda_driver"] = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if cuda is not None else None
        return info
    finally:
        session.close()


def _nvml_optional(lib: Any, name: str) -> Any:
    try:
        value = getattr(lib, name)()
    except AttributeError:
        return None
    except Exception as exc:
        if is_nvml_error(lib, exc):
            return None
        raise
    return as_text(value) if isinstance(value, bytes) else value

__all__ = [
    "all_gpus",
    "GpuIdentity",
    "gpu_info",
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_NO_PERMISSION",
    "NvmlSession",
    "NvmlUnavailable",
    "ReadOnlyNvml",
    "decode_throttle_reasons",
    "describe_error",
    "device_count",
    "error_code",
    "as_text",
    "is_nvml_error",
    "is_read_only_call",
    "load",
    "read_only",
]
