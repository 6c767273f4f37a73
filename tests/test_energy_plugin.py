"""The energy pytest plugin: options in the `disagg` group, skips with reasons, and the fixtures
and dvfs parametrization on a fake NVML placed where the plugin imports ``pynvml`` from."""
from __future__ import annotations

import sys
import time

import pytest

from fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "pytest_disagg.energy.pytest_plugin", "-p", "no:cacheprovider")


def test_options_are_in_the_disagg_group(pytester):
    result = pytester.runpytest(*PLUGIN, "--help")
    out = result.stdout.str()
    assert "disaggregated serving (pytest-disagg):" in out     # the group's title, whichever plugin made it
    for opt in ("--disagg-dvfs={off,dry-run,apply}", "--disagg-dvfs-grid=LO:HI:N", "--disagg-energy-gpus=I,J"):
        assert opt in out
    for ini in ("disagg_dvfs ", "disagg_dvfs_grid", "disagg_energy_gpus"):
        assert ini in out


@pytest.mark.parametrize("ini, message", [
    ("disagg_dvfs = maybe", "disagg_dvfs: dvfs mode must be one of off, dry-run, apply"),
    ("disagg_dvfs_grid = 360-1260", "disagg_dvfs_grid: clock grid spec must be LO:HI:N"),
    ("disagg_energy_gpus = 0,x", "--disagg-energy-gpus must be distinct non-negative"),
])
def test_bad_ini_value_is_a_usage_error(pytester, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() + result.stdout.str()


def test_without_nvml_energy_fixture_skips_and_dvfs_off_skips(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(1, init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    pytester.makepyfile("""
        def test_energy(disagg_energy_meter):
            pass
        def test_grid(disagg_dvfs_point):
            pass
        def test_clocks_off(disagg_clocks):
            assert disagg_clocks.mode == "off"
    """)
    result = pytester.runpytest(*PLUGIN, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    out = result.stdout.str()
    assert "no GPU energy measurement: NVML could not start" in out
    assert "dvfs is off" in out


def test_dry_run_grid_and_meter_on_a_gpu(pytester, monkeypatch):
    fake = FakeNvml(2, clock=time.monotonic)       # a counter that moves in real time
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    pytester.makepyfile("""
        from pytest_disagg.energy import StageClocks, stage_settings
        def test_point(disagg_dvfs_point, disagg_clocks, disagg_energy_meter):
            assert disagg_clocks.mode == "dry-run"
            assert disagg_energy_meter.idle is not None
            settings = stage_settings([0], disagg_dvfs_point.prefill, [1], disagg_dvfs_point.decode)
            with disagg_clocks.locked(settings) as plans:
                assert not any(p.applied for p in plans)
    """)
    result = pytester.runpytest(*PLUGIN, "--disagg-dvfs=dry-run", "--disagg-dvfs-grid=360:1260:2",
                                "--disagg-energy-gpus=0,1", "-v")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    for pid in ("p360-d360", "p360-d1260", "p1260-d360", "p1260-d1260"):
        assert f"test_point[{pid}]" in out
    assert fake.calls == []                        # dry-run: no set or reset reached the GPU
