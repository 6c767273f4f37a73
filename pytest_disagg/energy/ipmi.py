"""Whole-node power through the BMC (``ipmitool dcmi power reading``), where there is one.

Why: the seed study reports whole-node energy from IPMI beside GPU, CPU and DRAM; the BMC sees
fans, disks and power-supply losses that no per-component counter does. The BMC gives power, not
energy, so node energy is the integral of readings sampled about once a second (each reading is a
process start and a BMC round trip). No ipmitool, no BMC, or no permission → "unavailable".
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .integrate import PowerIntegrator
from .poller import BackgroundPoller, PolledSource
from .results import EnergyFigure

COMMAND = ("ipmitool", "dcmi", "power", "reading")
METHOD = "ipmi-power-integral"
COMPONENT = "node"

_FIELDS = {
    "instantaneous_w": r"Instantaneous power reading",
    "minimum_w": r"Minimum during sampling period",
    "maximum_w": r"Maximum during sampling period",
    "average_w": r"Average power reading over sample period",
}


class IpmiUnavailable(RuntimeError):
    """Node power cannot be read here; ``str()`` says why."""


@dataclass(frozen=True)
class IpmiPowerReading:
    instantaneous_w: float
    minimum_w: float | None
    maximum_w: float | None
    average_w: float | None
    sampling_period_s: float | None
    active: bool


def parse_power_reading(text: str) -> IpmiPowerReading:
    """Parse ``ipmitool dcmi power reading`` output; a reading without the instantaneous value, or
    with power measurement deactivated on the BMC, is an error (not a 0 W reading)."""
    values: dict[str, float | None] = {}
    for key, label in _FIELDS.items():
        m = re.search(label + r"\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*Watts", text, re.IGNORECASE)
        values[key] = float(m.group(1)) if m else None
    if values["instantaneous_w"] is None:
        raise IpmiUnavailable(f"no instantaneous power in ipmitool output: {text.strip()[:200]!r}")
    period = re.search(r"Sampling period\s*:\s*([0-9]+)\s*(Second|Millisecond)s?", text, re.IGNORECASE)
    period_s = None
    if period:
        period_s = int(period.group(1)) / (1000.0 if period.group(2).lower().startswith("milli") else 1.0)
    state = re.search(r"Power reading state is\s*:\s*(\w+)", text, re.IGNORECASE)
    active = state is None or state.group(1).lower() == "activated"
    if not active:
        raise IpmiUnavailable("the BMC reports power measurement deactivated")
    return IpmiPowerReading(
        instantaneous_w=values["instantaneous_w"], minimum_w=values["minimum_w"],
        maximum_w=values["maximum_w"], average_w=values["average_w"],
        sampling_period_s=period_s, active=active,
    )


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def read_node_power(*, runner: Runner = subprocess.run, which: Callable[[str], str | None] = shutil.which,
                    timeout_s: float = 10.0) -> IpmiPowerReading:
    """One reading; raises :class:`IpmiUnavailable` with the reason when there is none."""
    if which(COMMAND[0]) is None:
        raise IpmiUnavailable("ipmitool is not installed (no node power)")
    try:
        proc = runner(list(COMMAND), capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IpmiUnavailable(f"ipmitool failed to run: {exc}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise IpmiUnavailable(f"ipmitool exited {proc.returncode}: {err[0] if err else 'no output'} "
                              "(a BMC and the ipmi_si/ipmi_devintf drivers, usually root, are needed)")
    return parse_power_reading(proc.stdout)


class NodePowerMeter(PolledSource):
    """Node energy windows from BMC power samples (trapezoid integral)."""

    def __init__(self, *, interval_s: float | None = 1.0, runner: Runner = subprocess.run,
                 which: Callable[[str], str | None] = shutil.which,
                 clock: Callable[[], float] = time.monotonic):
        self._read = lambda: read_node_power(runner=runner, which=which)
        self._clock = clock
        self._lock = threading.Lock()
        self._integ = PowerIntegrator()
        self._open: dict[str, tuple[float, float, int]] = {}
        self.unavailable: str | None = None
        self.sample_once()
        self._poller = (BackgroundPoller(self.sample_once, interval_s, "disagg-ipmi-sampler")
                        if interval_s is not None and self.unavailable is None else None)

    def sample_once(self) -> None:
        if self.unavailable is not None:
            return
        try:
            reading = self._read()
        except IpmiUnavailable as exc:
            self.unavailable = str(exc)
            return
        with self._lock:
            t = self._clock()
            if self._integ.last_t is None or t >= self._integ.last_t:
                self._integ.add(t, reading.instantaneous_w)

    def begin(self, name: str) -> None:
        self.sample_once()
        with self._lock:
            if name in self._open:
                raise ValueError(f"node power window {name!r} is already open")
            t = self._clock()
            self._open[name] = (t, self._integ.value_at(t) or 0.0, self._integ.samples)

    def end(self, name: str) -> EnergyFigure:
        self.sample_once()
        with self._lock:
            if name not in self._open:
                raise KeyError(f"no open node power window named {name!r}")
            t0, j0, n0 = self._open.pop(name)
            t = self._clock()
            seconds = t - t0
            if self.unavailable is not None:
                return EnergyFigure.missing(COMPONENT, METHOD, self.unavailable, seconds)
            joules = (self._integ.value_at(t) or 0.0) - j0
            inside = self._integ.samples - n0
        notes = () if inside >= 3 else (f"only {inside} BMC reading(s) in the window",)
        return EnergyFigure(component=COMPONENT, joules=joules, seconds=seconds, method=METHOD,
                            reliable=inside >= 3, notes=notes)
