"""The meter and the dry-run clock path on a real GPU; skipped (with the reason) where NVML is not
usable. Read-only: nothing here can change a GPU setting (the meter and dry-run hold NVML through
the read-only view)."""
from __future__ import annotations

import time

import pytest

from pytest_disagg.energy import nvmllib
from pytest_disagg.energy.clocks import ClockController, StageClocks
from pytest_disagg.energy.nvml import EnergyMeter


@pytest.fixture(scope="module")
def gpu0():
    try:
        return nvmllib.all_gpus()[0]
    except nvmllib.NvmlUnavailable as exc:
        pytest.skip(f"needs a GPU with NVML: {exc}")


def test_real_counter_window_and_measured_period(gpu0):
    with EnergyMeter([gpu0], sample_interval_s=0.1) as meter:
        meter.begin("w")
        time.sleep(1.2)
        w = meter.end("w")
        timeline = meter.timeline()
    (period,) = meter.info.counter_periods
    assert w.method == "counter", w.notes
    assert w.joules_by_gpu[gpu0] > 0 and w.reliable
    assert period.period_s is not None and 0 < period.period_s < 2.0
    assert w.counter_period_s == period.period_s
    assert w.power_integral_j_by_gpu[gpu0] is not None and w.power_integral_j_by_gpu[gpu0] > 0
    assert any(s.sm_mhz for s in timeline) and any(s.power_w for s in timeline)


def test_real_dry_run_validates_and_cannot_set(gpu0):
    with ClockController("dry-run") as ctl:
        supported = ctl.supported(gpu0).sm_for(None)
        middle = supported[len(supported) // 2]
        (plan,) = ctl.plan({gpu0: StageClocks(sm_mhz=middle + 1)})
        assert plan.target.sm_mhz in supported and not plan.applied
        assert isinstance(ctl._session.nvml, nvmllib.ReadOnlyNvml)
