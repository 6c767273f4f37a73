"""pytest wiring for the energy library: options, fixtures, the dvfs parametrization. Thin.

Options (group ``disagg``, each with an ini twin):
  --disagg-dvfs=off|dry-run|apply   (disagg_dvfs)        clock control mode; default off
  --disagg-dvfs-grid=LO:HI:N        (disagg_dvfs_grid)   SM clocks per stage, MHz; default 360:1260:4
  --disagg-energy-gpus=0,1          (disagg_energy_gpus) NVML indices to meter; default all

Fixtures: ``disagg_energy_meter`` (session; started, idle measured; skips without NVML; the
session's ``remote_meter`` where the GPUs are read elsewhere: an attached deployment's
DCGM-exporter, or under ``--disagg-launcher=ray`` on GPUs a :class:`~.nodes.NodeEnergy` with a
sampler actor per node),
``disagg_clocks`` (session; a ClockController in the selected mode), and ``disagg_dvfs_point``
(one DvfsPoint per grid configuration; skipped when dvfs is off or NVML is missing).
"""
from __future__ import annotations

from typing import Iterator

import pytest

from ..optionspec import Option, add_options, option_value
from ..session import remote_meter
from . import nvmllib
from .clocks import MODES, ClockController, ClockError, ClockSupportError, parse_mode
from .grid import dvfs_grid, evenly_spaced, parse_range_spec
from .nvml import EnergyMeter

DEFAULT_GRID = "360:1260:4"
IDLE_SECONDS = 2.0
OPTIONS = (
    Option("--disagg-dvfs", "disagg_dvfs", "GPU clock control: off (default), dry-run (validate and log, set "
           "nothing), apply (lock clocks per stage; needs root; always reset afterwards)", "off", choices=MODES),
    Option("--disagg-dvfs-grid", "disagg_dvfs_grid", f"SM clocks (MHz) tried for prefill and for decode GPUs, N "
           f"evenly spaced from LO to HI and snapped to supported clocks (default {DEFAULT_GRID})", DEFAULT_GRID,
           metavar="LO:HI:N"),
    Option("--disagg-energy-gpus", "disagg_energy_gpus", "NVML GPU indices to meter (default: every GPU NVML "
           "sees)", "", metavar="I,J"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    """Check the settings up front, so a typo is a usage error, not a failed fixture."""
    dvfs_mode(config)
    energy_gpus(config)
    grid_spec(config)


def _setting(config: pytest.Config, name: str) -> str:
    return str(option_value(config, name))


def dvfs_mode(config: pytest.Config) -> str:
    try:
        return parse_mode(_setting(config, "disagg_dvfs"))
    except ValueError as exc:
        raise pytest.UsageError(f"disagg_dvfs: {exc}") from None


def grid_spec(config: pytest.Config) -> tuple[int, int, int]:
    try:
        return parse_range_spec(_setting(config, "disagg_dvfs_grid"))
    except ClockError as exc:
        raise pytest.UsageError(f"disagg_dvfs_grid: {exc}") from None


def energy_gpus(config: pytest.Config) -> tuple[int, ...] | None:
    """The configured GPU indices, or None for "every GPU NVML sees"."""
    text = _setting(config, "disagg_energy_gpus").strip()
    if not text:
        return None
    try:
        gpus = tuple(int(x) for x in text.split(","))
        if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            raise ValueError
        return gpus
    except ValueError:
        raise pytest.UsageError(f"--disagg-energy-gpus must be distinct non-negative comma-separated ints, got {text!r}") from None


def _gpus_or_skip(config: pytest.Config) -> tuple[int, ...]:
    gpus = energy_gpus(config)
    if gpus is not None:
        return gpus
    try:
        return nvmllib.all_gpus()
    except nvmllib.NvmlUnavailable as exc:
        pytest.skip(f"no GPU energy measurement: {exc}")


@pytest.fixture(scope="session")
def disagg_energy_meter(pytestconfig: pytest.Config) -> Iterator[EnergyMeter]:
    remote = remote_meter(pytestconfig)
    if remote is not None:    # an attached deployment's DCGM-exporter, or samplers on the Ray nodes
        try:
            yield remote
        finally:
            getattr(remote, "close", lambda: None)()
        return
    meter = EnergyMeter(_gpus_or_skip(pytestconfig))
    try:
        meter.start()
    except nvmllib.NvmlUnavailable as exc:
        pytest.skip(f"no GPU energy measurement: {exc}")
    try:
        meter.measure_idle(IDLE_SECONDS)
        yield meter
    finally:
        meter.stop()


@pytest.fixture(scope="session")
def disagg_clocks(pytestconfig: pytest.Config) -> Iterator[ClockController]:
    mode = dvfs_mode(pytestconfig)
    if mode != "off":
        _gpus_or_skip(pytestconfig)
    controller = ClockController(mode)
    try:
        yield controller
    finally:
        controller.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "disagg_dvfs_point" not in metafunc.fixturenames:
        return
    config = metafunc.config
    mode = dvfs_mode(config)
    lo, hi, n = grid_spec(config)
    if mode == "off":
        metafunc.parametrize("disagg_dvfs_point", [pytest.param(
            None, id="dvfs-off", marks=pytest.mark.skip(reason="dvfs is off (--disagg-dvfs=dry-run|apply)"))])
        return
    gpus = energy_gpus(config) or (0,)
    try:
        with ClockController("dry-run") as probe:
            supported = probe.supported(gpus[0]).sm_for(None)
    except (nvmllib.NvmlUnavailable, ClockSupportError, ValueError) as exc:
        metafunc.parametrize("disagg_dvfs_point", [pytest.param(
            None, id="dvfs-unavailable", marks=pytest.mark.skip(reason=f"dvfs grid needs NVML: {exc}"))])
        return
    values = evenly_spaced(lo, hi, n)
    points = dvfs_grid(values, values, prefill_supported=supported, decode_supported=supported)
    metafunc.parametrize("disagg_dvfs_point", points, ids=[p.id for p in points])
