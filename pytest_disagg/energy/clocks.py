"""Stage-wise locked GPU clocks that are always put back.

Why: the seed study asks whether running prefill and decode GPUs at different clocks saves
energy. Answering it means locking SM (and, where the GPU allows, memory) clocks per stage; doing
that safely means (1) checking every value against the GPU's supported-clocks lists before
touching anything, (2) a ``dry-run`` mode that does all the checking and logs what it would set but
calls no setter (it holds NVML through the read-only view, so it cannot), and (3) putting the
clocks back on every way out of the process (:mod:`.restore`).

"Put back" means NVML's reset calls (``nvmlDeviceResetGpuLockedClocks`` /
``nvmlDeviceResetMemoryLockedClocks``), which return a GPU to its driver default. NVML offers no
way to read an existing lock back, so a lock someone else placed before the run cannot be
reinstated; the clocks seen before applying are recorded in each :class:`ClockPlan` so a report
shows what the GPU was doing.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

from . import nvmllib
from .restore import RestoreGuard

log = logging.getLogger(__name__)

MODES = ("off", "dry-run", "apply")
SNAP_POLICIES = ("nearest", "exact")


class ClockError(ValueError):
    """A requested clock the GPU does not support (or a malformed request)."""


class ClockSupportError(RuntimeError):
    """The GPU (or driver) cannot do what was asked, e.g. lock memory clocks."""


class ClockPermissionError(PermissionError):
    """NVML refused a clock change for lack of privileges."""


class ClockRestoreError(RuntimeError):
    """Some clock could not be reset; the message lists which and why."""


def parse_mode(text: str) -> str:
    mode = str(text).strip().lower()
    if mode not in MODES:
        raise ValueError(f"dvfs mode must be one of {', '.join(MODES)}; got {text!r}")
    return mode


@dataclass(frozen=True)
class StageClocks:
    """Clocks for one stage's GPUs; None leaves that clock alone."""

    sm_mhz: int | None = None
    mem_mhz: int | None = None

    def __post_init__(self) -> None:
        for name in ("sm_mhz", "mem_mhz"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ClockError(f"{name} must be a positive int (MHz) or None, got {v!r}")

    def to_json(self) -> dict:
        return {"sm_mhz": self.sm_mhz, "mem_mhz": self.mem_mhz}


@dataclass(frozen=True)
class SupportedClocks:
    """A GPU's supported memory clocks and, per memory clock, its supported SM clocks."""

    mem_mhz: tuple[int, ...]
    sm_by_mem: Mapping[int, tuple[int, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sm_by_mem", MappingProxyType(dict(self.sm_by_mem)))

    def default_mem(self) -> int:
        """The memory clock SM clocks are validated against when none is locked: the highest,
        which is what datacenter GPUs run at by default."""
        return max(self.mem_mhz)

    def sm_for(self, mem_mhz: int | None) -> tuple[int, ...]:
        mem = self.default_mem() if mem_mhz is None else mem_mhz
        return self.sm_by_mem[mem]


def read_supported(nvml: Any, handle: Any, gpu: int) -> SupportedClocks:
    """Read the supported-clocks lists; a GPU that does not report them cannot be validated."""
    try:
        mems = tuple(sorted(int(m) for m in nvml.nvmlDeviceGetSupportedMemoryClocks(handle)))
        sm_by_mem = {
            m: tuple(sorted(int(c) for c in nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, m)))
            for m in mems
        }
    except Exception as exc:
        if nvmllib.is_nvml_error(nvml, exc):
            raise ClockSupportError(
                f"GPU {gpu} does not report its supported clocks "
                f"({nvmllib.describe_error(nvml, exc)}); clocks cannot be validated there"
            ) from exc
        raise
    if not mems or not all(sm_by_mem.values()):
        raise ClockSupportError(f"GPU {gpu} reports an empty supported-clocks list")
    return SupportedClocks(mem_mhz=mems, sm_by_mem=sm_by_mem)


def snap(value: int, supported: Sequence[int], *, policy: str = "nearest", what: str = "clock") -> int:
    """The supported value to use for ``value``.

    ``nearest`` picks the closest supported value (the lower one on a tie) but refuses values
    outside the supported range, since snapping 100 MHz up to 210 MHz would hide a typo. ``exact``
    accepts listed values only.
    """
    if policy not in SNAP_POLICIES:
        raise ValueError(f"snap policy must be one of {SNAP_POLICIES}, got {policy!r}")
    values = sorted(set(supported))
    if not values:
        raise ClockError(f"no supported {what} values to choose from")
    if value in values:
        return value
    lo, hi = values[0], values[-1]
    if policy == "exact":
        near = sorted(values, key=lambda v: (abs(v - value), v))[:3]
        raise ClockError(f"{what} {value} MHz is not supported (nearest supported: {sorted(near)} MHz)")
    if value < lo or value > hi:
        raise ClockError(f"{what} {value} MHz is outside the supported range {lo}–{hi} MHz")
    return min(values, key=lambda v: (abs(v - value), v))


def stage_settings(
    prefill_gpus: Sequence[int], prefill: StageClocks,
    decode_gpus: Sequence[int], decode: StageClocks,
) -> dict[int, StageClocks]:
    """Per-GPU clocks from per-stage clocks. A GPU in both stages must get the same clocks: one GPU
    cannot run at two clocks, and a silent choice would mislabel the results."""
    out: dict[int, StageClocks] = {}
    for gpus, clocks, role in ((prefill_gpus, prefill, "prefill"), (decode_gpus, decode, "decode")):
        for g in gpus:
            if g in out and out[g] != clocks:
                raise ClockError(
                    f"GPU {g} serves both prefill and decode, which ask for different clocks "
                    f"({out[g]} vs {clocks} for {role}); a shared GPU has one clock"
                )
            out[g] = clocks
    return out


@dataclass(frozen=True)
class ClockPlan:
    """What the controller did (or would do) for one GPU."""

    gpu: int
    mode: str
    requested: StageClocks
    target: StageClocks                 # after snapping to supported values
    before_sm_mhz: int | None
    before_mem_mhz: int | None
    applied: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {
            "gpu": self.gpu,
            "mode": self.mode,
            "requested": self.requested.to_json(),
            "target": self.target.to_json(),
            "before_sm_mhz": self.before_sm_mhz,
            "before_mem_mhz": self.before_mem_mhz,
            "applied": self.applied,
            "notes": list(self.notes),
        }


_SET = {"sm": "nvmlDeviceSetGpuLockedClocks", "mem": "nvmlDeviceSetMemoryLockedClocks"}
_RESET = {"sm": "nvmlDeviceResetGpuLockedClocks", "mem": "nvmlDeviceResetMemoryLockedClocks"}


class ClockController:
    """Validates, and in ``apply`` mode sets, per-GPU locked clocks; restores on every exit path.

    ``off``: nothing is read or set (no NVML needed). ``dry-run``: everything is validated and
    logged, nothing is set, measurements run at the current clocks. ``apply``: clocks are locked
    inside :meth:`locked` and reset when it ends, on SIGINT/SIGTERM, or at interpreter exit.
    """

    def __init__(self, mode: str = "off", *, nvml: Any = None, snap_policy: str = "nearest",
                 exit_guard: bool = True):
        self.mode = parse_mode(mode)
        if snap_policy not in SNAP_POLICIES:
            raise ValueError(f"snap policy must be one of {SNAP_POLICIES}, got {snap_policy!r}")
        self.snap_policy = snap_policy
        self._nvml_arg = nvml
        self._exit_guard = exit_guard
        self._session: nvmllib.NvmlSession | None = None
        self._handles: dict[int, Any] = {}
        self._supported: dict[int, SupportedClocks] = {}
        self._changed: list[tuple[int, str]] = []   # (gpu, "sm"|"mem") locks to reset, in order set
        self._guard: RestoreGuard | None = None

    # -- public ------------------------------------------------------------------------------
    def plan(self, settings: Mapping[int, StageClocks]) -> tuple[ClockPlan, ...]:
        """Validate ``settings`` (GPU index -> clocks) and say what would be set; sets nothing."""
        _check_settings(settings)
        if self.mode == "off":
            return tuple(
                ClockPlan(gpu=g, mode="off", requested=c, target=c, before_sm_mhz=None,
                          before_mem_mhz=None, applied=False, notes=("dvfs off: not validated, not set",))
                for g, c in sorted(settings.items())
            )
        return tuple(self._plan_one(g, c) for g, c in sorted(settings.items()))

    def supported(self, gpu: int) -> SupportedClocks:
        """The supported-clocks lists of one GPU (read once, then cached)."""
        if self.mode == "off":
            raise RuntimeError("dvfs is off: supported clocks are not read")
        if gpu not in self._supported:
            self._supported[gpu] = read_supported(self._lib(), self._handle(gpu), gpu)
        return self._supported[gpu]

    @contextlib.contextmanager
    def locked(self, settings: Mapping[int, StageClocks]) -> Iterator[tuple[ClockPlan, ...]]:
        """Lock clocks for the block (``apply``), or validate and log only (``dry-run``/``off``)."""
        plans = self.plan(settings)
        if self.mode != "apply":
            for p in plans:
                if self.mode == "dry-run":
                    log.info("dry-run: would lock GPU %d at %s (requested %s); nothing set",
                             p.gpu, _fmt(p.target), _fmt(p.requested))
            yield plans
            return
        guard = self._arm()
        try:
            applied = self._apply(plans)
        except BaseException:
            self._restore_and_disarm(guard, raise_errors=False)
            raise
        try:
            yield applied
        except BaseException:
            self._restore_and_disarm(guard, raise_errors=False)
            raise
        self._restore_and_disarm(guard, raise_errors=True)

    def restore(self) -> list[str]:
        """Reset every lock this controller set and has not reset yet; returns the failures."""
        errors: list[str] = []
        nvml = self._session.nvml if self._session is not None else None
        for gpu, kind in list(reversed(self._changed)):
            try:
                getattr(nvml, _RESET[kind])(self._handles[gpu])
            except Exception as exc:
                if not nvmllib.is_nvml_error(nvml, exc):
                    raise
                errors.append(f"GPU {gpu} {kind} clocks not reset: {self._explain(exc, gpu, 'reset')}")
                continue
            self._changed.remove((gpu, kind))
            log.info("restored GPU %d %s clocks to the driver default", gpu, kind)
        return errors

    @property
    def pending_restore(self) -> tuple[tuple[int, str], ...]:
        """Locks set and not yet reset (empty outside an ``apply`` block)."""
        return tuple(self._changed)

    def close(self) -> None:
        """Restore anything still locked and release NVML."""
        errors = self.restore()
        if self._session is not None:
            session, self._session = self._session, None
            self._handles.clear()
            session.close()
        if errors:
            raise ClockRestoreError("; ".join(errors))

    def __enter__(self) -> "ClockController":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _lib(self) -> Any:
        if self._session is None:
            lib = nvmllib.load(self._nvml_arg)
            if self.mode != "apply":
                lib = nvmllib.read_only(lib)
            self._session = nvmllib.NvmlSession(lib, ())
        return self._session.nvml

    def _handle(self, gpu: int) -> Any:
        if gpu not in self._handles:
            lib = self._lib()
            count = lib.nvmlDeviceGetCount()
            if gpu >= count:
                raise ValueError(f"GPU index {gpu} not present: NVML sees {count} GPU(s)")
            self._handles[gpu] = lib.nvmlDeviceGetHandleByIndex(gpu)
        return self._handles[gpu]

    def _plan_one(self, gpu: int, req: StageClocks) -> ClockPlan:
        lib, handle = self._lib(), self._handle(gpu)
        sup = self.supported(gpu)
        notes: list[str] = []
        mem = req.mem_mhz
        if mem is not None:
            mem = snap(mem, sup.mem_mhz, policy=self.snap_policy, what=f"GPU {gpu} memory clock")
            if mem != req.mem_mhz:
                notes.append(f"memory clock {req.mem_mhz} MHz snapped to {mem} MHz")
        sm = req.sm_mhz
        if sm is not None:
            sm = snap(sm, sup.sm_for(mem), policy=self.snap_policy, what=f"GPU {gpu} SM clock")
            if sm != req.sm_mhz:
                notes.append(f"SM clock {req.sm_mhz} MHz snapped to {sm} MHz")
        if mem is not None and self.mode == "dry-run":
            notes.append("memory clock locking support is only known once applied")
        return ClockPlan(
            gpu=gpu, mode=self.mode, requested=req, target=StageClocks(sm_mhz=sm, mem_mhz=mem),
            before_sm_mhz=_read_clock(lib, handle, lib.NVML_CLOCK_SM),
            before_mem_mhz=_read_clock(lib, handle, lib.NVML_CLOCK_MEM),
            applied=False, notes=tuple(notes),
        )

    def _arm(self) -> RestoreGuard | None:
        if not self._exit_guard:
            return None
        if self._guard is None:
            self._guard = RestoreGuard(self._restore_logged)
        self._guard.arm()
        return self._guard

    def _restore_logged(self) -> None:
        for err in self.restore():
            log.error("%s", err)

    def _restore_and_disarm(self, guard: RestoreGuard | None, *, raise_errors: bool) -> None:
        try:
            if guard is not None:
                guard.run_cleanup()        # the guard holds back signals while resetting
            errors = self.restore()        # a second pass reports what the first could not do
        finally:
            if guard is not None:
                guard.disarm()
        if errors:
            msg = "; ".join(errors)
            if raise_errors:
                raise ClockRestoreError(msg)
            log.error("%s", msg)

    def _apply(self, plans: Sequence[ClockPlan]) -> tuple[ClockPlan, ...]:
        out = []
        for p in plans:
            handle = self._handles[p.gpu]
            # memory first: the SM clock was validated against the memory clock being locked
            for kind, value in (("mem", p.target.mem_mhz), ("sm", p.target.sm_mhz)):
                if value is None:
                    continue
                self._changed.append((p.gpu, kind))   # before the call: a signal in between still resets
                try:
                    getattr(self._session.nvml, _SET[kind])(handle, value, value)
                except Exception as exc:
                    self._changed.remove((p.gpu, kind))
                    if not nvmllib.is_nvml_error(self._session.nvml, exc):
                        raise
                    raise self._translate(exc, p.gpu, kind) from exc
                log.info("locked GPU %d %s clock at %d MHz", p.gpu, kind, value)
            out.append(replace(p, applied=True))
        return tuple(out)

    def _translate(self, exc: BaseException, gpu: int, kind: str) -> Exception:
        code = nvmllib.error_code(exc)
        text = self._explain(exc, gpu, "lock")
        if code == nvmllib.NVML_ERROR_NO_PERMISSION:
            return ClockPermissionError(text)
        if code == nvmllib.NVML_ERROR_NOT_SUPPORTED:
            return ClockSupportError(f"GPU {gpu} cannot lock its {'memory' if kind == 'mem' else 'SM'} "
                                     f"clock: {text}")
        return ClockError(f"GPU {gpu}: locking {kind} clock failed: {text}")

    def _explain(self, exc: BaseException, gpu: int, action: str) -> str:
        lib = self._session.nvml if self._session else None
        if nvmllib.error_code(exc) == nvmllib.NVML_ERROR_NO_PERMISSION:
            return (f"NVML refused to {action} GPU {gpu}'s clocks (NVML_ERROR_NO_PERMISSION): changing "
                    f"GPU clocks needs root (CAP_SYS_ADMIN) on a machine where that is allowed; "
                    f"run as root there, or use --disagg-dvfs=dry-run to validate without setting")
        return nvmllib.describe_error(lib, exc)


def _check_settings(settings: Mapping[int, StageClocks]) -> None:
    if not isinstance(settings, Mapping):
        raise ClockError("clock settings must map GPU index -> StageClocks")
    for g, c in settings.items():
        if isinstance(g, bool) or not isinstance(g, int) or g < 0:
            raise ClockError(f"GPU index must be a non-negative int, got {g!r}")
        if not isinstance(c, StageClocks):
            raise ClockError(f"GPU {g}: expected StageClocks, got {type(c).__name__}")


def _read_clock(nvml: Any, handle: Any, which: int) -> int | None:
    try:
        return int(nvml.nvmlDeviceGetClockInfo(handle, which))
    except Exception as exc:
        if nvmllib.is_nvml_error(nvml, exc):
            return None
        raise


def _fmt(c: StageClocks) -> str:
    parts = []
    if c.sm_mhz is not None:
        parts.append(f"SM {c.sm_mhz} MHz")
    if c.mem_mhz is not None:
        parts.append(f"memory {c.mem_mhz} MHz")
    return ", ".join(parts) or "no change"
