"""GPU energy meter over NVML: named windows on the energy counter, plus a sampled timeline.

Why this shape (after Zeus's ``ZeusMonitor``, re-thought, no code taken): a window's energy is the
difference of the hardware counter read exactly at ``begin`` and ``end``, in the caller's thread,
so it does not depend on how often a background thread happens to wake. The background sampler is
there for what the counter cannot tell: power, SM/memory clocks, temperature and clock-event
("throttle") reasons over time, and the integrated power kept beside each window as a cross-check
(and used as the energy itself on GPUs without a counter, flagged ``power-integral``).

A boundary waits for the counter's next update (``align_boundaries``): the counter moves only
every ~100 ms, so a value read at an arbitrary moment is up to a period old, and at the end of a
busy run that missing tail is up to 100 ms at full power — on an H100 running the A/B shape
(~600 W over 2.4 s windows) up to ~4 % of a run's joules, uniformly, which is more than the GPU's
own run-to-run spread. Read at the update, each boundary is off by one read (~4 ms) instead; a
run's window then ends at the first update after it, adding at most one period of the power
after it. The wait (at most a period, or ``ALIGN_TIMEOUT_S`` where no update comes) is paid in
the caller's thread, between runs, never inside one.

The meter only ever reads: it holds NVML through :class:`~.nvmllib.ReadOnlyNvml`, so no code path
of it can change a GPU's settings.

No pytest here; ``pytest_plugin.py`` wraps it.
"""
from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import nvmllib
from .integrate import PowerIntegrator
from .period import measure_update_period
from .poller import BackgroundPoller
from .results import (
    METHOD_COUNTER,
    METHOD_POWER,
    MIN_RELIABLE_SECONDS,
    CounterPeriod,
    EnergyWindow,
    IdleBaseline,
    TimelineSample,
    summarize_methods,
)

IDLE_WINDOW = "__idle__"
ALIGN_TIMEOUT_PERIODS = 3     # a boundary waits this many measured counter periods for an update
ALIGN_TIMEOUT_S = 0.3         # ... or this long where the period is unknown
ALIGN_POLL_S = 0.001          # between two counter reads while waiting (a read itself takes ~4 ms)


@dataclass(frozen=True)
class MeterInfo:
    """How a meter measures: which GPUs, which method per GPU, measured counter periods."""

    gpus: tuple[nvmllib.GpuIdentity, ...]
    method_by_gpu: Mapping[int, str]
    counter_periods: tuple[CounterPeriod, ...]
    sample_interval_s: float | None
    energy_every: int

    def to_json(self) -> dict:
        return {
            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid} for g in self.gpus],
            "method_by_gpu": {str(k): v for k, v in self.method_by_gpu.items()},
            "counter_periods": [p.to_json() for p in self.counter_periods],
            "sample_interval_s": self.sample_interval_s,
            "energy_every": self.energy_every,
        }


class WindowHandle:
    """What ``with meter.window(name) as w`` yields: ``w.result`` once the block has left."""

    def __init__(self, name: str):
        self.name = name
        self._result: EnergyWindow | None = None

    @property
    def result(self) -> EnergyWindow:
        if self._result is None:
            raise RuntimeError(f"window {self.name!r} has not ended yet")
        return self._result


@contextlib.contextmanager
def windowed(meter: Any, name: str) -> Iterator[WindowHandle]:
    """``with`` over a meter's ``begin``/``end``/``cancel`` (this module's, or a multi-node one):
    the handle's result once the block has left; on an exception the window is cancelled."""
    handle = WindowHandle(name)
    meter.begin(name)
    try:
        yield handle
    except BaseException:
        meter.cancel(name)
        raise
    handle._result = meter.end(name)


@dataclass
class _Boundary:
    t: float
    wall: float
    counter_j: dict[int, float | None]
    integral_j: dict[int, float | None]
    power_samples: dict[int, int] = field(default_factory=dict)
    unaligned: tuple[int, ...] = ()      # counter GPUs whose update did not come within the timeout


class EnergyMeter:
    """Energy windows and a timeline for a set of GPUs (NVML physical indices).

    ``sample_interval_s=None`` runs no background thread (tests drive :meth:`sample_once`).
    ``energy_every``: the counter is read into the timeline every that many samples only, because
    one counter read costs milliseconds on recent drivers; windows never depend on it.
    ``align_boundaries``: a window's boundaries wait for each counter's next update (module
    docstring); off, they read the counters at once (the old behaviour, for comparison).
    ``clock``/``sleep`` are injectable so that tests need no real time.
    """

    def __init__(
        self,
        gpu_indices: Sequence[int],
        *,
        nvml: Any = None,
        sample_interval_s: float | None = 0.1,
        energy_every: int = 10,
        timeline_seconds: float = 3600.0,
        measure_period: bool = True,
        align_boundaries: bool = True,
        period_changes: int = 5,
        period_max_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.gpu_indices = tuple(gpu_indices)
        if not self.gpu_indices:
            raise ValueError("EnergyMeter needs at least one GPU index")
        if sample_interval_s is not None and not (sample_interval_s > 0):
            raise ValueError(f"sample_interval_s must be > 0 or None, got {sample_interval_s!r}")
        if energy_every < 1:
            raise ValueError(f"energy_every must be >= 1, got {energy_every!r}")
        if timeline_seconds <= 0:
            raise ValueError("timeline_seconds must be > 0")
        self._nvml_arg = nvml
        self.sample_interval_s = sample_interval_s
        self.energy_every = energy_every
        self._measure_period = measure_period
        self.align_boundaries = align_boundaries
        self._period_changes = period_changes
        self._period_max_seconds = period_max_seconds
        self._clock, self._wall, self._sleep = clock, wall_clock, sleep
        per_gpu = math.ceil(timeline_seconds / (sample_interval_s or 0.1))
        self._timeline: collections.deque[TimelineSample] = collections.deque(
            maxlen=per_gpu * len(self.gpu_indices)
        )
        self._lock = threading.Lock()
        self._open: dict[str, _Boundary] = {}
        self._session: nvmllib.NvmlSession | None = None
        self._poller: BackgroundPoller | None = None
        self._ticks = 0
        self._unsupported: set[tuple[int, str]] = set()
        self.errors = 0
        self.last_error: str | None = None
        self.idle: IdleBaseline | None = None
        self.info: MeterInfo | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "EnergyMeter":
        if self._session is not None:
            raise RuntimeError("meter already started")
        nvml = nvmllib.read_only(nvmllib.load(self._nvml_arg))
        session = nvmllib.NvmlSession(nvml, self.gpu_indices)
        try:
            self._nvml, self._session = nvml, session
            self._handles = session.handles
            methods = {g: self._probe_method(g) for g in self.gpu_indices}
            periods = tuple(
                self._measure_counter_period(g) for g in self.gpu_indices
                if methods[g] == METHOD_COUNTER and self._measure_period
            )
            self._integrators = {g: PowerIntegrator() for g in self.gpu_indices}
            self.info = MeterInfo(
                gpus=tuple(session.identities[g] for g in self.gpu_indices),
                method_by_gpu=methods,
                counter_periods=periods,
                sample_interval_s=self.sample_interval_s,
                energy_every=self.energy_every,
            )
            self.sample_once()
        except BaseException:
            self._session = None
            session.close()
            raise
        if self.sample_interval_s is not None:
            self._poller = BackgroundPoller(self.sample_once, self.sample_interval_s, "disagg-energy-sampler")
            self._poller.start()
        return self

    def stop(self) -> None:
        """Stop the sampler and release NVML; open windows are discarded. Idempotent."""
        if self._poller is not None:
            self._poller.stop()
        if self._session is not None:
            session, self._session = self._session, None
            self._open.clear()
            session.close()

    def __enter__(self) -> "EnergyMeter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._session is not None

    @property
    def sampling(self) -> bool:
        return self._poller is not None and self._poller.running

    @property
    def sampler_cpu_seconds(self) -> float:
        """CPU time the sampler thread has used (``time.thread_time`` inside it)."""
        return self._poller.cpu_seconds if self._poller is not None else 0.0

    def counter_period_s(self) -> float | None:
        """The longest measured counter period among this meter's counter GPUs."""
        periods = [p.period_s for p in (self.info.counter_periods if self.info else ())]
        if not periods or any(p is None for p in periods):
            return None
        return max(periods)

    # -- windows -----------------------------------------------------------------------------
    def begin(self, name: str) -> None:
        """Open window ``name``: read every GPU's counter now. Names are unique among open ones."""
        self._require_running()
        if not isinstance(name, str) or not name:
            raise ValueError("a window name must be a non-empty string")
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open")
        boundary = self._read_boundary()
        with self._lock:
            if name in self._open:
                raise ValueError(f"window {name!r} is already open")
            self._open[name] = boundary

    def end(self, name: str) -> EnergyWindow:
        """Close window ``name`` and return its immutable result."""
        self._require_running()
        with self._lock:
            if name not in self._open:
                raise KeyError(f"no open window named {name!r} (open: {sorted(self._open)})")
        end = self._read_boundary()
        with self._lock:
            start = self._open.pop(name)
        return self._result(name, start, end)

    def cancel(self, name: str) -> None:
        """Drop an open window without a result (for a block that failed)."""
        with self._lock:
            self._open.pop(name, None)

    def window(self, name: str) -> contextlib.AbstractContextManager[WindowHandle]:
        """``with meter.window("decode") as w: ...`` then ``w.result``; on an exception the window
        is dropped, since its energy would describe a run that did not finish."""
        return windowed(self, name)

    def open_windows(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._open)

    def measure_idle(self, seconds: float = 2.0) -> IdleBaseline:
        """Measure idle power over ``seconds`` (run it while nothing uses the GPUs)."""
        if seconds <= 0:
            raise ValueError("idle window seconds must be > 0")
        self.begin(IDLE_WINDOW)
        try:
            self._sleep(seconds)
        except BaseException:
            self.cancel(IDLE_WINDOW)
            raise
        window = self.end(IDLE_WINDOW)
        if window.seconds <= 0:
            raise RuntimeError("idle window measured no time: the meter's clock did not advance")
        self.idle = IdleBaseline(
            watts_by_gpu={g: j / window.seconds for g, j in window.joules_by_gpu.items()},
            seconds=window.seconds,
            method=window.method,
            reliable=window.reliable,
        )
        return self.idle

    # -- timeline ----------------------------------------------------------------------------
    def timeline(self) -> tuple[TimelineSample, ...]:
        with self._lock:
            return tuple(self._timeline)

    def sample_once(self) -> None:
        """One sampler tick: every GPU's power, clocks, temperature, reasons (and counter every
        ``energy_every`` ticks) into the timeline and the power integrators."""
        self._require_running()
        nvml = self._nvml
        read_counter = self._ticks % self.energy_every == 0
        self._ticks += 1
        for g in self.gpu_indices:
            h = self._handles[g]
            power_mw = self._field(g, "power", nvml.nvmlDeviceGetPowerUsage, h)
            t = self._clock()
            energy_mj = (
                self._field(g, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption, h)
                if read_counter and self.info.method_by_gpu[g] == METHOD_COUNTER else None
            )
            sample = TimelineSample(
                t=t,
                gpu=g,
                power_w=None if power_mw is None else power_mw / 1000.0,
                energy_j=None if energy_mj is None else energy_mj / 1000.0,
                sm_mhz=self._field(g, "sm", nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM),
                mem_mhz=self._field(g, "mem", nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_MEM),
                temp_c=self._field(g, "temp", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU),
                throttle_reasons=self._field(g, "reasons", self._reasons_fn(), h),
            )
            with self._lock:
                self._timeline.append(sample)
                if sample.power_w is not None:
                    self._add_power(g, t, sample.power_w)

    # -- internals ---------------------------------------------------------------------------
    def _require_running(self) -> None:
        if self._session is None:
            raise RuntimeError("energy meter is not started (use start() or a with block)")

    def _probe_method(self, gpu: int) -> str:
        h = self._handles[gpu]
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            return METHOD_COUNTER
        except Exception as exc:
            if nvmllib.error_code(exc) != nvmllib.NVML_ERROR_NOT_SUPPORTED:
                raise
        try:
            self._nvml.nvmlDeviceGetPowerUsage(h)
        except Exception as exc:
            if nvmllib.is_nvml_error(self._nvml, exc):
                raise nvmllib.NvmlUnavailable(
                    f"GPU {gpu} has no energy counter and its power cannot be read: "
                    f"{nvmllib.describe_error(self._nvml, exc)}"
                ) from exc
            raise
        return METHOD_POWER

    def _measure_counter_period(self, gpu: int) -> CounterPeriod:
        h = self._handles[gpu]
        return measure_update_period(
            lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(h),
            gpu=gpu, clock=self._clock, sleep=self._sleep,
            changes=self._period_changes, max_seconds=self._period_max_seconds,
        )

    def _reasons_fn(self) -> Callable[..., int]:
        nvml = self._nvml
        try:
            return nvml.nvmlDeviceGetCurrentClocksEventReasons
        except AttributeError:
            return nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    def _field(self, gpu: int, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One optional reading: None if unsupported (then never asked again) or on an error."""
        if (gpu, key) in self._unsupported:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if not nvmllib.is_nvml_error(self._nvml, exc):
                raise
            if nvmllib.error_code(exc) == nvmllib.NVML_ERROR_NOT_SUPPORTED:
                self._unsupported.add((gpu, key))
            else:
                self.errors += 1
                self.last_error = f"GPU {gpu} {key}: {nvmllib.describe_error(self._nvml, exc)}"
            return None

    def _add_power(self, gpu: int, t: float, watts: float) -> None:
        # Caller holds the lock. A sample older than the integrator's last one (a sampler read that
        # lost the race with a window boundary) is left out of the integral, kept in the timeline.
        integ = self._integrators[gpu]
        if integ.last_t is None or t >= integ.last_t:
            integ.add(t, watts)

    def _read_counter_j(self, gpu: int) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[gpu]) / 1000.0

    def _align_timeout_s(self) -> float:
        period = self.counter_period_s()
        return ALIGN_TIMEOUT_S if period is None else ALIGN_TIMEOUT_PERIODS * period

    def _aligned_counters(self, first: dict[int, float]) -> tuple[dict[int, float], tuple[int, ...]]:
        """Each counter's value at its next update after ``first`` was read: poll until it moves
        (at most ``_align_timeout_s``). Returns the values and the GPUs whose counter did not move
        in time (their ``first`` value is kept)."""
        values, waiting = dict(first), set(first)
        deadline = self._clock() + self._align_timeout_s()
        while waiting and self._clock() < deadline:
            self._sleep(ALIGN_POLL_S)
            for g in sorted(waiting):
                value = self._read_counter_j(g)
                if value != first[g]:
                    values[g] = value
                    waiting.discard(g)
        return values, tuple(sorted(waiting))

    def _read_boundary(self) -> _Boundary:
        """Counters first, back to back (they define the window; aligned to their next update
        unless ``align_boundaries`` is off), then power for the integral."""
        nvml = self._nvml
        counters: dict[int, float | None] = {g: None for g in self.gpu_indices}
        first = {g: self._read_counter_j(g) for g in self.gpu_indices
                 if self.info.method_by_gpu[g] == METHOD_COUNTER}
        unaligned: tuple[int, ...] = ()
        if first and self.align_boundaries:
            first, unaligned = self._aligned_counters(first)
        counters.update(first)
        t = self._clock()
        wall = self._wall()
        integrals: dict[int, float | None] = {}
        samples: dict[int, int] = {}
        for g in self.gpu_indices:
            power_mw = self._field(g, "power", nvml.nvmlDeviceGetPowerUsage, self._handles[g])
            tp = self._clock()
            with self._lock:
                if power_mw is not None:
                    self._add_power(g, tp, power_mw / 1000.0)
                integ = self._integrators[g]
                integrals[g] = integ.value_at(max(tp, integ.last_t or tp))
                samples[g] = integ.samples
        return _Boundary(t=t, wall=wall, counter_j=counters, integral_j=integrals, power_samples=samples,
                         unaligned=unaligned)

    def _result(self, name: str, start: _Boundary, end: _Boundary) -> EnergyWindow:
        seconds = max(0.0, end.t - start.t)
        notes: list[str] = []
        reliable = True
        if seconds < MIN_RELIABLE_SECONDS:
            reliable = False
            notes.append(f"shorter than {MIN_RELIABLE_SECONDS:g} s ({seconds:.3f} s)")
        joules: dict[int, float] = {}
        integral: dict[int, float | None] = {}
        methods = dict(self.info.method_by_gpu)
        for g in self.gpu_indices:
            a, b = start.integral_j[g], end.integral_j[g]
            integral[g] = None if a is None or b is None else b - a
            if methods[g] == METHOD_COUNTER:
                delta = end.counter_j[g] - start.counter_j[g]
                if delta < 0:
                    reliable = False
                    notes.append(f"GPU {g}: energy counter went backwards (driver reloaded?)")
                joules[g] = delta
                continue
            if integral[g] is None:
                raise RuntimeError(f"window {name!r}: GPU {g} has no power samples to integrate")
            joules[g] = integral[g]
            if end.power_samples[g] - start.power_samples[g] < 2:
                reliable = False
                notes.append(f"GPU {g}: power integral rests on the two boundary samples only")
        period = self.counter_period_s()
        if period is None and METHOD_COUNTER in methods.values():
            notes.append("counter update period unknown")
        for which, boundary in (("start", start), ("end", end)):
            if boundary.unaligned:
                notes.append(f"{which} not at a counter update (GPU {', '.join(map(str, boundary.unaligned))}: none "
                             f"within {self._align_timeout_s():.2f} s): off by up to a period")
        errors = self.errors + (self._poller.errors if self._poller else 0)
        if errors:
            last = self.last_error or (self._poller.last_error if self._poller else None)
            notes.append(f"{errors} sampler read error(s); last: {last}")
        return EnergyWindow(
            name=name,
            seconds=seconds,
            joules_by_gpu=joules,
            reliable=reliable,
            method=summarize_methods(methods),
            counter_period_s=period,
            method_by_gpu=methods,
            power_integral_j_by_gpu=integral,
            idle_watts_by_gpu=None if self.idle is None else dict(self.idle.watts_by_gpu),
            started_unix_s=start.wall,
            notes=tuple(notes),
        )
