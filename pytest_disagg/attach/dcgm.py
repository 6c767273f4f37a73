"""GPU energy of an attached deployment from DCGM-exporter, when NVML is not local.

DCGM-exporter publishes ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` — each GPU's energy since the
driver loaded, in millijoules, a counter — with a ``gpu`` label (and ``Hostname``/``UUID``). A
window reads every exporter before and after the run; a GPU's joules are the difference / 1000.
GPUs are numbered across exporters in the order given: the first exporter's GPUs keep their
``gpu`` label, the next ones' follow after the highest number so far (``roles.<role>.gpus`` in the
attach file uses these numbers).

The meter has the ``window(name)`` face of :class:`pytest_disagg.energy.nvml.EnergyMeter`, so the
benchmark code measures an attached deployment exactly like one of its own.
"""
from __future__ import annotations

import contextlib
import time
import urllib.request
from typing import Iterator, Sequence

from .. import promparse
from ..energy.nvml import WindowHandle
from ..energy.results import EnergyWindow
from ..session import attach_config_of

METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
METHOD = "dcgm-counter"


class DcgmError(RuntimeError):
    """An exporter that does not answer or has no energy counter."""


def read_energy_mj(text: str, source: str) -> dict[str, float]:
    """``gpu`` label (with Hostname when present) → millijoules, from one exporter's text."""
    scrape = promparse.parse(text, source)
    out: dict[str, float] = {}
    for key, (name, labels) in scrape.names.items():
        if name not in (METRIC, METRIC + "_total"):   # the parser adds _total to a counter
            continue
        value = scrape.counters.get(key, scrape.gauges.get(key))
        if value is None or "gpu" not in labels:
            continue
        out[labels["gpu"] if "Hostname" not in labels else f"{labels['Hostname']}/{labels['gpu']}"] = value
    if not out:
        raise DcgmError(f"{source}: no {METRIC} series with a gpu label (is the DCGM field enabled in the "
                        "exporter's counters CSV?)")
    return out


class DcgmMeter:
    """Energy windows from one or more DCGM-exporter ``/metrics`` URLs."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 10.0):
        if not urls:
            raise ValueError("a DCGM meter needs at least one exporter URL")
        self.urls = tuple(urls)
        self.timeout_s = timeout_s
        self._numbers: dict[tuple[int, str], int] = {}

    def _scrape(self) -> dict[int, float]:
        by_gpu: dict[int, float] = {}
        for i, url in enumerate(self.urls):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                    text = resp.read().decode("utf-8", "replace")
            except OSError as exc:
                raise DcgmError(f"DCGM exporter {url} does not answer ({getattr(exc, 'reason', exc)})") from None
            for label, mj in sorted(read_energy_mj(text, url).items()):
                by_gpu[self._number(i, label)] = mj
        return by_gpu

    def _number(self, exporter: int, label: str) -> int:
        key = (exporter, label)
        if key not in self._numbers:
            leaf = label.rsplit("/", 1)[-1]
            if exporter == 0 and leaf.isdigit() and int(leaf) not in self._numbers.values():
                self._numbers[key] = int(leaf)
            else:
                self._numbers[key] = max(self._numbers.values(), default=-1) + 1
        return self._numbers[key]

    def gpus(self) -> tuple[int, ...]:
        return tuple(sorted(self._scrape()))

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[WindowHandle]:
        handle = WindowHandle(name)
        t0, wall0, before = time.monotonic(), time.time(), self._scrape()
        yield handle
        after = self._scrape()
        seconds = time.monotonic() - t0
        notes = []
        joules = {}
        for g, mj in after.items():
            if g not in before:
                notes.append(f"GPU {g} appeared during the window: not counted")
                continue
            if mj < before[g]:
                notes.append(f"GPU {g}: the energy counter went backwards (driver reload?)")
                continue
            joules[g] = (mj - before[g]) / 1000.0
        handle._result = EnergyWindow(
            name=name, seconds=seconds, joules_by_gpu=joules, reliable=not notes, method=METHOD,
            counter_period_s=None, method_by_gpu={g: METHOD for g in joules}, started_unix_s=wall0, notes=tuple(notes))


def meter_for(config):
    """The session's DCGM meter when ``--disagg-attach`` names exporters, else None (NVML as usual)."""
    attached = attach_config_of(config)
    if attached is None or not attached.dcgm:
        return None
    return DcgmMeter(attached.dcgm)
