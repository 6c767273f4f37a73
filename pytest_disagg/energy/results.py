"""Immutable energy results and their JSON form.

Why a module of its own: the meter produces these, attribution and the report consume them, and
the report reads JSON only (docs/ARCHITECTURE.md). Every figure carries how it was measured
(``method``) and the counter's measured update period, because a joule count without those cannot
be compared across drivers or GPUs.

Mappings inside the frozen dataclasses are read-only views of private copies, so a result cannot
be changed after the fact by whoever holds the dict it was built from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

# Windows shorter than this are flagged unreliable: with a counter that updates about every
# 100 ms, one missed update is already a tenth of a 1 s window.
MIN_RELIABLE_SECONDS = 1.0

METHOD_COUNTER = "counter"            # nvmlDeviceGetTotalEnergyConsumption delta
METHOD_POWER = "power-integral"       # trapezoid over nvmlDeviceGetPowerUsage samples
METHOD_MIXED = "mixed"                # some GPUs one way, some the other


def _frozen(mapping: Mapping | None) -> Mapping | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


def _int_keys(mapping: Mapping[str, Any] | None) -> dict[int, Any] | None:
    return None if mapping is None else {int(k): v for k, v in mapping.items()}


def _str_keys(mapping: Mapping[int, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else {str(k): v for k, v in mapping.items()}


def summarize_methods(methods: Mapping[int, str]) -> str:
    """One label for a set of per-GPU methods: the shared one, or ``mixed``."""
    kinds = set(methods.values())
    if len(kinds) == 1:
        return kinds.pop()
    return METHOD_MIXED if kinds else METHOD_COUNTER


@dataclass(frozen=True)
class CounterPeriod:
    """The measured update period of one GPU's energy counter, and how it was measured."""

    gpu: int
    period_s: float | None         # None when no change was seen in the time allowed
    changes_seen: int
    poll_cost_s: float             # mean time of one counter read: the resolution of the estimate
    method: str                    # text for the record: how the figure was obtained
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "gpu": self.gpu,
            "period_s": self.period_s,
            "changes_seen": self.changes_seen,
            "poll_cost_s": self.poll_cost_s,
            "method": self.method,
            "note": self.note,
        }


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power per GPU, measured over a short window before a run."""

    watts_by_gpu: Mapping[int, float]
    seconds: float
    method: str
    reliable: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "watts_by_gpu", _frozen(self.watts_by_gpu))

    def to_json(self) -> dict:
        return {
            "watts_by_gpu": _str_keys(self.watts_by_gpu),
            "seconds": self.seconds,
            "method": self.method,
            "reliable": self.reliable,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "IdleBaseline":
        return cls(
            watts_by_gpu=_int_keys(d["watts_by_gpu"]) or {},
            seconds=float(d["seconds"]),
            method=str(d["method"]),
            reliable=bool(d["reliable"]),
        )


@dataclass(frozen=True)
class EnergyWindow:
    """GPU energy of one named window.

    ``joules_by_gpu`` is the counter delta per GPU (or the power integral where the GPU has no
    counter; ``method_by_gpu`` says which). ``power_integral_j_by_gpu`` is the integral of the
    sampled power over the same interval, kept as a cross-check (None for a GPU with too few
    samples). ``counter_period_s`` is the longest measured update period among the window's GPUs.
    """

    name: str
    seconds: float
    joules_by_gpu: Mapping[int, float]
    reliable: bool
    method: str
    counter_period_s: float | None
    method_by_gpu: Mapping[int, str] = field(default_factory=dict)
    power_integral_j_by_gpu: Mapping[int, float | None] = field(default_factory=dict)
    idle_watts_by_gpu: Mapping[int, float] | None = None
    idle_subtracted: bool = False
    started_unix_s: float | None = None
    notes: tuple[str, ...] = ()
    # Windows merged from several nodes (energy/nodes.py): GPU key -> {"node", "index"}; None on one machine.
    gpu_nodes: Mapping[int, Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an energy window needs a name")
        if not (self.seconds >= 0 and math.isfinite(self.seconds)):
            raise ValueError(f"window seconds must be finite and >= 0, got {self.seconds!r}")
        for attr in ("joules_by_gpu", "method_by_gpu", "power_integral_j_by_gpu", "idle_watts_by_gpu", "gpu_nodes"):
            object.__setattr__(self, attr, _frozen(getattr(self, attr)))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def total_joules(self) -> float:
        return float(sum(self.joules_by_gpu.values()))

    @property
    def average_watts_by_gpu(self) -> dict[int, float | None]:
        if self.seconds <= 0:
            return {g: None for g in self.joules_by_gpu}
        return {g: j / self.seconds for g, j in self.joules_by_gpu.items()}

    def counter_vs_power_rel_diff(self, gpu: int) -> float | None:
        """(counter − power integral) / counter for one GPU; None where either is missing."""
        if self.method_by_gpu.get(gpu) != METHOD_COUNTER:
            return None
        integral = self.power_integral_j_by_gpu.get(gpu)
        counter = self.joules_by_gpu.get(gpu)
        if integral is None or not counter:
            return None
        return (counter - integral) / counter

    def minus_idle(self) -> "EnergyWindow":
        """The same window with idle energy (idle watts × seconds) taken off each GPU.

        The result can be negative when a GPU drew less than its idle baseline; it is kept so, not
        clamped, because a clamp would hide a bad baseline.
        """
        if self.idle_subtracted:
            raise ValueError(f"window {self.name!r}: idle energy is already subtracted")
        if self.idle_watts_by_gpu is None:
            raise ValueError(f"window {self.name!r}: no idle baseline was measured (measure_idle first)")
        missing = [g for g in self.joules_by_gpu if g not in self.idle_watts_by_gpu]
        if missing:
            raise ValueError(f"window {self.name!r}: no idle baseline for GPU(s) {missing}")
        idle = self.idle_watts_by_gpu
        return replace(
            self,
            joules_by_gpu={g: j - idle[g] * self.seconds for g, j in self.joules_by_gpu.items()},
            power_integral_j_by_gpu={
                g: (None if j is None else j - idle[g] * self.seconds)
                for g, j in self.power_integral_j_by_gpu.items()
            },
            idle_subtracted=True,
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "joules_by_gpu": _str_keys(self.joules_by_gpu),
            "total_joules": self.total_joules,
            "reliable": self.reliable,
            "method": self.method,
            "method_by_gpu": _str_keys(self.method_by_gpu),
            "counter_period_s": self.counter_period_s,
            "power_integral_j_by_gpu": _str_keys(self.power_integral_j_by_gpu),
            "idle_watts_by_gpu": _str_keys(self.idle_watts_by_gpu),
            "idle_subtracted": self.idle_subtracted,
            "started_unix_s": self.started_unix_s,
            "notes": list(self.notes),
            **({"gpu_nodes": {str(k): dict(v) for k, v in self.gpu_nodes.items()}} if self.gpu_nodes is not None else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EnergyWindow":
        return cls(
            name=str(d["name"]),
            seconds=float(d["seconds"]),
            joules_by_gpu=_int_keys(d["joules_by_gpu"]) or {},
            reliable=bool(d["reliable"]),
            method=str(d["method"]),
            counter_period_s=d.get("counter_period_s"),
            method_by_gpu=_int_keys(d.get("method_by_gpu")) or {},
            power_integral_j_by_gpu=_int_keys(d.get("power_integral_j_by_gpu")) or {},
            idle_watts_by_gpu=_int_keys(d.get("idle_watts_by_gpu")),
            idle_subtracted=bool(d.get("idle_subtracted", False)),
            started_unix_s=d.get("started_unix_s"),
            notes=tuple(d.get("notes", ())),
            gpu_nodes=_int_keys(d.get("gpu_nodes")),
        )


@dataclass(frozen=True, slots=True)
class TimelineSample:
    """One sampler reading of one GPU; a field is None where the GPU does not report it."""

    t: float                      # the meter's clock (monotonic seconds)
    gpu: int
    power_w: float | None
    energy_j: float | None        # counter value, read every few samples only (it is costly)
    sm_mhz: int | None
    mem_mhz: int | None
    temp_c: int | None
    throttle_reasons: int | None  # bitmask; nvmllib.decode_throttle_reasons names the bits

    def to_json(self) -> dict:
        return {
            "t": self.t,
            "gpu": self.gpu,
            "power_w": self.power_w,
            "energy_j": self.energy_j,
            "sm_mhz": self.sm_mhz,
            "mem_mhz": self.mem_mhz,
            "temp_c": self.temp_c,
            "throttle_reasons": self.throttle_reasons,
        }


@dataclass(frozen=True)
class EnergyFigure:
    """Energy of one non-GPU component (CPU package, DRAM, node) over a window.

    ``joules`` is None when the machine does not expose the component; ``unavailable`` then says
    why. It is never 0 for "unknown": a 0 would be summed into totals as if measured.
    """

    component: str                 # "cpu-package" | "dram" | "node" | ...
    joules: float | None
    seconds: float
    method: str                    # "rapl" | "ipmi-power-integral" | ...
    unavailable: str | None = None
    reliable: bool = True
    detail: Mapping[str, float] = field(default_factory=dict)   # e.g. per socket
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.joules is None) == (self.unavailable is None):
            raise ValueError("an EnergyFigure has either joules or an 'unavailable' reason, not both/neither")
        object.__setattr__(self, "detail", _frozen(self.detail))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def available(self) -> bool:
        return self.joules is not None

    @classmethod
    def missing(cls, component: str, method: str, reason: str, seconds: float = 0.0) -> "EnergyFigure":
        return cls(component=component, joules=None, seconds=seconds, method=method,
                   unavailable=reason, reliable=False)

    def to_json(self) -> dict:
        return {
            "component": self.component,
            "joules": self.joules,
            "seconds": self.seconds,
            "method": self.method,
            "unavailable": self.unavailable,
            "reliable": self.reliable,
            "detail": dict(self.detail),
            "notes": list(self.notes),
        }
