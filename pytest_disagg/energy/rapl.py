"""CPU package and DRAM energy from RAPL counters under ``/sys/class/powercap``.

Why: the seed study's finding is that the deeper the tier the KV cache passes through, the more
energy goes to CPU and DRAM; the GPU counter alone cannot show that. RAPL zones expose cumulative
microjoule counters that wrap at ``max_energy_range_uj``; a running total that is advanced on
every read (and by a slow poller thread) turns them into wrap-safe window deltas, as long as
reads are closer together than one wrap (minutes at server power).

Where RAPL is not readable (no powercap, a VM, ``energy_uj`` being root-only since Linux 5.10)
every figure is "unavailable" with the reason: never 0, which would be summed as a measurement.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .poller import BackgroundPoller, PolledSource
from .results import EnergyFigure

DEFAULT_ROOT = Path("/sys/class/powercap")
METHOD = "rapl"
COMPONENT_BY_DOMAIN = {"package": "cpu-package", "dram": "dram", "core": "cpu-core",
                       "uncore": "cpu-uncore", "psys": "platform"}
_ZONE_DIR = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    domain: str            # "package" | "dram" | "core" | "uncore" | "psys"
    socket: int
    max_range_uj: int

    @property
    def key(self) -> str:
        return f"{self.domain}-{self.socket}"


def discover(root: Path = DEFAULT_ROOT) -> tuple[tuple[RaplZone, ...], dict[str, str]]:
    """Zones under ``root`` and, per domain that could not be used, the reason.

    Only ``intel-rapl:N[:M]`` zones are read (AMD's RAPL driver uses the same names);
    ``intel-rapl-mmio`` duplicates the package counter and would double count.
    """
    root = Path(root)
    if not root.is_dir():
        return (), {"*": f"{root} does not exist (no powercap/RAPL on this machine)"}
    zones: list[RaplZone] = []
    problems: dict[str, str] = {}
    for d in sorted(root.iterdir()):
        m = _ZONE_DIR.match(d.name)
        if not m:
            continue
        try:
            name = (d / "name").read_text().strip()
            max_range = int((d / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError) as exc:
            problems[d.name] = f"{d}: unreadable ({exc})"
            continue
        domain = "package" if name.startswith("package") else name
        socket = int(m.group(1))
        if domain == "package":
            pm = re.match(r"package-(\d+)$", name)
            socket = int(pm.group(1)) if pm else socket
        zones.append(RaplZone(path=d, domain=domain, socket=socket, max_range_uj=max_range))
    if not zones and not problems:
        problems["*"] = f"no intel-rapl zones under {root}"
    return tuple(zones), problems


def wrap_delta(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Energy between two reads of a counter that wraps to 0 after ``max_range_uj``."""
    if end_uj >= start_uj:
        return end_uj - start_uj
    return end_uj + max_range_uj - start_uj


class RaplMeter(PolledSource):
    """Windows of CPU package / DRAM energy (summed over sockets, per socket in ``detail``)."""

    def __init__(self, domains: Sequence[str] = ("package", "dram"), *, root: Path = DEFAULT_ROOT,
                 poll_interval_s: float | None = 10.0, clock: Callable[[], float] = time.monotonic):
        unknown = [d for d in domains if d not in COMPONENT_BY_DOMAIN]
        if unknown:
            raise ValueError(f"unknown RAPL domain(s) {unknown}; known: {sorted(COMPONENT_BY_DOMAIN)}")
        self.domains = tuple(domains)
        self._clock = clock
        zones, problems = discover(root)
        self._zones = [z for z in zones if z.domain in self.domains]
        self._unavailable: dict[str, str] = {}
        for d in self.domains:
            if "*" in problems:
                self._unavailable[d] = problems["*"]
            elif not any(z.domain == d for z in self._zones):
                self._unavailable[d] = f"no RAPL {d} zone under {root}" + (
                    f" ({'; '.join(problems.values())})" if problems else "")
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self._open: dict[str, tuple[float, dict[str, int]]] = {}
        self._poller = (BackgroundPoller(self.poll, poll_interval_s, "disagg-rapl-poller")
                        if poll_interval_s is not None and self._zones else None)
        self.poll()

    def unavailable(self, domain: str) -> str | None:
        """Why ``domain`` cannot be measured, or None when it can."""
        return self._unavailable.get(domain)

    def poll(self) -> None:
        """Read every zone and advance the running totals (wrap-safe between two reads)."""
        with self._lock:
            for z in self._zones:
                if z.domain in self._unavailable:
                    continue
                try:
                    value = int((z.path / "energy_uj").read_text().strip())
                except PermissionError:
                    self._unavailable[z.domain] = (
                        f"{z.path / 'energy_uj'} is not readable (root-only since Linux 5.10)")
                    continue
                except (OSError, ValueError) as exc:
                    self._unavailable[z.domain] = f"{z.path / 'energy_uj'}: {exc}"
                    continue
                if z.key in self._last:
                    self._total[z.key] += wrap_delta(self._last[z.key], value, z.max_range_uj)
                else:
                    self._total[z.key] = 0
                self._last[z.key] = value

    def begin(self, name: str) -> None:
        self.poll()
        with self._lock:
            if name in self._open:
                raise ValueError(f"RAPL window {name!r} is already open")
            self._open[name] = (self._clock(), dict(self._total))

    def end(self, name: str) -> tuple[EnergyFigure, ...]:
        self.poll()
        with self._lock:
            if name not in self._open:
                raise KeyError(f"no open RAPL window named {name!r}")
            t0, start = self._open.pop(name)
            seconds = self._clock() - t0
            return tuple(self._figure(d, start, seconds) for d in self.domains)

    def _figure(self, domain: str, start: dict[str, int], seconds: float) -> EnergyFigure:
        component = COMPONENT_BY_DOMAIN[domain]
        if domain in self._unavailable:
            return EnergyFigure.missing(component, METHOD, self._unavailable[domain], seconds)
        detail = {}
        for z in self._zones:
            if z.domain == domain and z.key in start and z.key in self._total:
                detail[f"socket{z.socket}"] = (self._total[z.key] - start[z.key]) / 1e6
        if not detail:
            return EnergyFigure.missing(component, METHOD, f"RAPL {domain} zones not read at window start", seconds)
        return EnergyFigure(component=component, joules=float(sum(detail.values())), seconds=seconds,
                            method=METHOD, detail=detail)
