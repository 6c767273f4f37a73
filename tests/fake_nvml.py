"""A scripted stand-in for the ``pynvml`` binding, for tests on machines without a GPU.

What it models: per GPU, piecewise-constant power (``set_power``) on a fake clock; an energy
counter that only moves every ``counter_period_s`` (like the real one, about every 100 ms) or is
absent (pre-Volta: NOT_SUPPORTED); supported memory/graphics clock lists; locked clocks that change
what ``nvmlDeviceGetClockInfo`` reports. Every set/reset call is recorded (in ``calls`` and, when
``record_path`` is given, appended to a JSON-lines file at once, so a test can read what a child
process did even after a signal killed it). ``fail()`` injects NVMLError codes into any function.

The fake clock only moves when a test says so (``advance``) or code sleeps on it, so tests make
no timing assertions.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0

FAKE_DRIVER = "999.99-fake"
H100_SM_CLOCKS = tuple(range(1980, 344, -15))   # 1980 .. 345 MHz in 15 MHz steps, as an H100 lists them


class NVMLError(Exception):
    """Like pynvml's: carries the numeric code in ``value``."""

    def __init__(self, value: int):
        super().__init__(f"fake NVML error {value}")
        self.value = value


class FakeClock:
    """Seconds that move only when told; ``sleep`` advances it."""

    def __init__(self, start: float = 1000.0):
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError("time does not go backwards")
        self.t += dt

    sleep = advance


@dataclass
class FakeGpu:
    name: str = "Fake H100"
    power_w: float = 100.0
    counter_period_s: float | None = 0.1       # None: no energy counter (NOT_SUPPORTED)
    counter_offset_mj: int = 5_000_000_000     # counters count from driver load
    power_reading: Callable[[float, float], float] | None = None   # (t, true W) -> reported W
    mem_clocks: tuple[int, ...] = (2619,)
    sm_clocks: dict[int, tuple[int, ...]] = field(default_factory=dict)   # per mem clock
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    temp_c: int = 40
    reasons: int = 0x1
    sm_locked: tuple[int, int] | None = None
    mem_locked: tuple[int, int] | None = None
    segments: list[tuple[float, float]] = field(default_factory=list)   # (start t, watts)

    def supported_sm(self, mem: int) -> tuple[int, ...]:
        return self.sm_clocks.get(mem, H100_SM_CLOCKS)


class FakeHandle:
    def __init__(self, index: int):
        self.index = index

    def __repr__(self) -> str:
        return f"FakeHandle({self.index})"


class FakeNvml:
    """Module-like: pass it as ``nvml=`` wherever the library takes a binding."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[FakeGpu] | int = 1, *, clock: FakeClock | None = None,
                 record_path: str | Path | None = None, init_error: int | None = None):
        self.gpus = [FakeGpu() for _ in range(gpus)] if isinstance(gpus, int) else list(gpus)
        self.clock = clock or FakeClock()
        for g in self.gpus:
            if not g.segments:
                g.segments.append((self.clock(), g.power_w))
        self.record_path = Path(record_path) if record_path else None
        self.init_error = init_error
        self.calls: list[tuple] = []
        self.energy_reads = 0
        self.inits = 0
        self.shutdowns = 0
        self._faults: dict[tuple[str, int | None], list[Any]] = {}

    # -- scripting ---------------------------------------------------------------------------
    def set_power(self, gpu: int, watts: float) -> None:
        """From now on GPU ``gpu`` draws ``watts``."""
        self.gpus[gpu].segments.append((self.clock(), float(watts)))

    def true_energy_j(self, gpu: int, t: float | None = None) -> float:
        """Exact integral of the scripted power from the first segment up to ``t``."""
        t = self.clock() if t is None else t
        segs = self.gpus[gpu].segments
        total = 0.0
        for i, (start, watts) in enumerate(segs):
            end = segs[i + 1][0] if i + 1 < len(segs) else math.inf
            if t <= start:
                break
            total += watts * (min(t, end) - start)
        return total

    def fail(self, fn: str, code: int, *, gpu: int | None = None, times: int | None = None) -> None:
        """Make ``fn`` raise NVMLError(code) (on ``gpu`` only, if given), ``times`` times or always."""
        self._faults[(fn, gpu)] = [code, times]

    def _check_fault(self, fn: str, gpu: int | None) -> None:
        for key in ((fn, gpu), (fn, None)):
            fault = self._faults.get(key)
            if fault is None:
                continue
            code, times = fault
            if times is not None:
                if times <= 0:
                    continue
                fault[1] = times - 1
            raise NVMLError(code)

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if self.record_path is not None:
            with open(self.record_path, "a") as f:
                f.write(json.dumps(list(call)) + "\n")

    def _power_now(self, gpu: int) -> float:
        return self.gpus[gpu].segments[-1][1]

    # -- the binding's surface ---------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._check_fault("nvmlInit", None)
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index)

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:
        return self.gpus[h.index].name

    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:
        return f"GPU-fake-{h.index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeHandle) -> int:
        self._check_fault("nvmlDeviceGetTotalEnergyConsumption", h.index)
        gpu = self.gpus[h.index]
        if gpu.counter_period_s is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        self.energy_reads += 1
        t = self.clock()
        last_update = math.floor(t / gpu.counter_period_s) * gpu.counter_period_s
        return gpu.counter_offset_mj + int(round(self.true_energy_j(h.index, last_update) * 1000))

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:
        self._check_fault("nvmlDeviceGetPowerUsage", h.index)
        watts = self._power_now(h.index)
        shape = self.gpus[h.index].power_reading
        if shape is not None:
            watts = shape(self.clock(), watts)
        return int(round(watts * 1000))

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, which: int) -> int:
        self._check_fault("nvmlDeviceGetClockInfo", h.index)
        gpu = self.gpus[h.index]
        if which == NVML_CLOCK_MEM:
            return gpu.mem_locked[0] if gpu.mem_locked else gpu.mem_mhz
        return gpu.sm_locked[0] if gpu.sm_locked else gpu.sm_mhz

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:
        self._check_fault("nvmlDeviceGetTemperature", h.index)
        return self.gpus[h.index].temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeHandle) -> int:
        self._check_fault("nvmlDeviceGetCurrentClocksEventReasons", h.index)
        return self.gpus[h.index].reasons

    def nvmlDeviceGetSupportedMemoryClocks(self, h: FakeHandle) -> list[int]:
        self._check_fault("nvmlDeviceGetSupportedMemoryClocks", h.index)
        return list(self.gpus[h.index].mem_clocks)

    def nvmlDeviceGetSupportedGraphicsClocks(self, h: FakeHandle, mem: int) -> list[int]:
        self._check_fault("nvmlDeviceGetSupportedGraphicsClocks", h.index)
        gpu = self.gpus[h.index]
        if mem not in gpu.mem_clocks:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return list(gpu.supported_sm(mem))

    def nvmlDeviceSetGpuLockedClocks(self, h: FakeHandle, lo: int, hi: int) -> None:
        self._check_fault("nvmlDeviceSetGpuLockedClocks", h.index)
        self._record("nvmlDeviceSetGpuLockedClocks", h.index, lo, hi)
        self.gpus[h.index].sm_locked = (lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, h: FakeHandle) -> None:
        self._check_fault("nvmlDeviceResetGpuLockedClocks", h.index)
        self._record("nvmlDeviceResetGpuLockedClocks", h.index)
        self.gpus[h.index].sm_locked = None

    def nvmlDeviceSetMemoryLockedClocks(self, h: FakeHandle, lo: int, hi: int) -> None:
        self._check_fault("nvmlDeviceSetMemoryLockedClocks", h.index)
        self._record("nvmlDeviceSetMemoryLockedClocks", h.index, lo, hi)
        self.gpus[h.index].mem_locked = (lo, hi)

    def nvmlDeviceResetMemoryLockedClocks(self, h: FakeHandle) -> None:
        self._check_fault("nvmlDeviceResetMemoryLockedClocks", h.index)
        self._record("nvmlDeviceResetMemoryLockedClocks", h.index)
        self.gpus[h.index].mem_locked = None

    # -- helpers for assertions --------------------------------------------------------------
    def set_calls(self) -> list[tuple]:
        return [c for c in self.calls if c[0].startswith("nvmlDeviceSet")]

    def locked(self, gpu: int) -> bool:
        g = self.gpus[gpu]
        return g.sm_locked is not None or g.mem_locked is not None


def read_record(path: str | Path) -> list[list]:
    """The calls a (child) process recorded in ``record_path``."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class FakeNvmlWithDriver(FakeNvml):
    """The fake plus the driver-version query (the plain fake models a binding without it)."""

    def nvmlSystemGetDriverVersion(self) -> str:
        return FAKE_DRIVER


def two_gpus_in_real_time() -> FakeNvml:
    """For samplers in other processes (``energy.nodes.load_nvml_source``): GPU 0 at 100 W and
    GPU 1 at 300 W, on the real monotonic clock, so a window's joules follow its length."""
    import time

    return FakeNvmlWithDriver([FakeGpu(power_w=100.0), FakeGpu(power_w=300.0)], clock=time.monotonic)
