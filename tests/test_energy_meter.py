"""EnergyMeter against the fake NVML: windows are counter deltas, nest and overlap, carry the
measured counter period, flag short windows, subtract idle power on request."""
from __future__ import annotations

import dataclasses
import json
import threading
from types import SimpleNamespace

import pytest

from fake_nvml import (NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_NOT_SUPPORTED, FakeClock, FakeGpu,
                       FakeNvml)
from pytest_disagg.energy import nvmllib
from pytest_disagg.energy.nvml import EnergyMeter
from pytest_disagg.energy.results import EnergyWindow


def make(gpus, **kw):
    clock = FakeClock()
    fake = FakeNvml(gpus, clock=clock)
    meter = EnergyMeter(list(range(len(fake.gpus))), nvml=fake, sample_interval_s=None, clock=clock,
                        sleep=clock.sleep, wall_clock=lambda: 1.7e9, **kw)
    return fake, clock, meter.start()


def quantum(watts, period=0.1):
    """One counter update's worth of energy: the most a boundary read can be off by."""
    return watts * period


def test_window_energy_is_the_counter_delta_not_integrated_power():
    # the reported power under-reads by 20 %; the window must follow the counter anyway
    gpu = FakeGpu(power_w=250.0, power_reading=lambda t, w: 0.8 * w)
    fake, clock, meter = make([gpu], align_boundaries=False)    # before/after are read at once too
    before = fake.nvmlDeviceGetTotalEnergyConsumption(fake.nvmlDeviceGetHandleByIndex(0))
    meter.begin("w")
    for _ in range(40):
        clock.advance(0.1)
        meter.sample_once()
    w = meter.end("w")
    after = fake.nvmlDeviceGetTotalEnergyConsumption(fake.nvmlDeviceGetHandleByIndex(0))
    assert w.method == "counter" and w.method_by_gpu[0] == "counter"
    assert w.joules_by_gpu[0] == pytest.approx((after - before) / 1000.0)
    assert w.joules_by_gpu[0] == pytest.approx(1000.0, abs=2 * quantum(250))
    assert w.power_integral_j_by_gpu[0] == pytest.approx(800.0, rel=0.01)
    assert w.counter_vs_power_rel_diff(0) == pytest.approx(0.2, abs=0.06)
    assert w.seconds == pytest.approx(4.0)
    assert w.reliable and w.notes == ()
    meter.stop()


def test_windows_nest_and_overlap():
    fake, clock, meter = make([FakeGpu(power_w=100.0)], align_boundaries=False)   # no waits between the steps
    meter.begin("a")
    clock.advance(1.0)
    fake.set_power(0, 400.0)
    meter.begin("b")
    with meter.window("inner") as inner:
        clock.advance(1.0)
    fake.set_power(0, 200.0)
    a = meter.end("a")            # a: 100 W for 1 s + 400 W for 1 s
    clock.advance(1.0)
    b = meter.end("b")            # b: 400 W for 1 s + 200 W for 1 s
    tol = 2 * quantum(400)
    assert a.joules_by_gpu[0] == pytest.approx(500.0, abs=tol)
    assert b.joules_by_gpu[0] == pytest.approx(600.0, abs=tol)
    assert inner.result.joules_by_gpu[0] == pytest.approx(400.0, abs=tol)
    assert meter.open_windows() == ()
    meter.stop()


def test_window_names_must_be_unique_and_known():
    _, _, meter = make(1)
    meter.begin("x")
    with pytest.raises(ValueError, match="already open"):
        meter.begin("x")
    with pytest.raises(KeyError, match="no open window named 'y'"):
        meter.end("y")
    with pytest.raises(ValueError, match="non-empty"):
        meter.begin("")
    meter.stop()


def test_window_block_that_raises_leaves_no_open_window():
    _, _, meter = make(1)
    with pytest.raises(RuntimeError, match="boom"):
        with meter.window("w"):
            raise RuntimeError("boom")
    assert meter.open_windows() == ()
    meter.stop()


@pytest.mark.parametrize("seconds, reliable", [(0.5, False), (0.99, False), (1.0, True), (3.0, True)])
def test_short_windows_are_flagged_unreliable(seconds, reliable):
    _, clock, meter = make(1)
    meter.begin("w")
    clock.advance(seconds)
    w = meter.end("w")
    assert w.reliable is reliable
    assert any("shorter than 1 s" in n for n in w.notes) is (not reliable)
    meter.stop()


@pytest.mark.parametrize("period", [0.1, 0.25, 0.05])
def test_counter_update_period_is_measured_and_recorded(period):
    _, clock, meter = make([FakeGpu(counter_period_s=period)])
    (measured,) = meter.info.counter_periods
    assert measured.period_s == pytest.approx(period, abs=0.002)   # poll resolution: 1 ms
    assert "median interval" in measured.method
    meter.begin("w")
    clock.advance(2.0)
    w = meter.end("w")
    assert w.counter_period_s == measured.period_s
    assert json.loads(json.dumps(w.to_json()))["counter_period_s"] == measured.period_s
    meter.stop()


def test_unknown_period_is_noted_not_invented():
    fake, clock, meter = make([FakeGpu(power_w=0.0)])   # a counter that never moves
    assert meter.info.counter_periods[0].period_s is None
    meter.begin("w")
    clock.advance(2.0)
    w = meter.end("w")
    assert w.counter_period_s is None
    assert "counter update period unknown" in w.notes
    assert [n.split(" (")[0] for n in w.notes if "counter update (" in n] == ["start not at a counter update",
                                                                           "end not at a counter update"]
    meter.stop()


@pytest.mark.parametrize("phase", [0.013, 0.051, 0.094])
def test_boundaries_at_counter_updates_keep_the_end_of_a_busy_run(phase):
    """A run ends at full power ``phase`` after a counter update: read at once, the window misses
    that last part of the run (at 600 W, up to 60 J a period); waiting for the next update it
    misses nothing and adds at most a period of the idle power after the run (10 J)."""
    busy_s = 2.4 + phase
    got = {}
    for align in (True, False):
        fake, clock, meter = make([FakeGpu(power_w=100.0)], align_boundaries=align)
        clock.advance(0.1 - clock() % 0.1 + 0.001)          # 1 ms after an update, idle
        meter.begin("run")
        fake.set_power(0, 600.0)
        clock.advance(busy_s)
        fake.set_power(0, 100.0)
        got[align] = meter.end("run")
        meter.stop()
    aligned, at_once = got[True].joules_by_gpu[0], got[False].joules_by_gpu[0]
    assert 600 * busy_s <= aligned <= 600 * busy_s + 2 * quantum(100)
    assert got[True].notes == () and got[True].reliable
    assert at_once < 600 * busy_s - 0.9 * phase * 600


def test_idle_power_is_reported_beside_and_subtracted_on_request():
    fake, clock, meter = make([FakeGpu(power_w=50.0), FakeGpu(power_w=70.0)])
    idle = meter.measure_idle(2.0)
    assert idle.watts_by_gpu[0] == pytest.approx(50.0, abs=quantum(50) * 2 / 2.0)
    assert idle.watts_by_gpu[1] == pytest.approx(70.0, abs=quantum(70) * 2 / 2.0)
    fake.set_power(0, 250.0)
    fake.set_power(1, 70.0)
    meter.begin("run")
    clock.advance(4.0)
    w = meter.end("run")
    assert dict(w.idle_watts_by_gpu) == dict(idle.watts_by_gpu) and not w.idle_subtracted
    net = w.minus_idle()
    assert net.idle_subtracted
    for g in (0, 1):
        assert net.joules_by_gpu[g] == pytest.approx(w.joules_by_gpu[g] - idle.watts_by_gpu[g] * w.seconds)
    assert net.joules_by_gpu[0] == pytest.approx(800.0, abs=60.0)
    assert net.joules_by_gpu[1] == pytest.approx(0.0, abs=30.0)
    with pytest.raises(ValueError, match="already subtracted"):
        net.minus_idle()
    meter.stop()


def test_minus_idle_without_baseline_is_an_error():
    _, clock, meter = make(1)
    meter.begin("w")
    clock.advance(1.0)
    with pytest.raises(ValueError, match="no idle baseline"):
        meter.end("w").minus_idle()
    meter.stop()


def test_gpu_without_counter_falls_back_to_integrated_power():
    fake, clock, meter = make([FakeGpu(power_w=120.0, counter_period_s=None), FakeGpu(power_w=80.0)],
                              align_boundaries=False)     # GPU 1's wait would lengthen GPU 0's window
    assert meter.info.method_by_gpu == {0: "power-integral", 1: "counter"}
    meter.begin("w")
    for _ in range(20):
        clock.advance(0.1)
        meter.sample_once()
    w = meter.end("w")
    assert w.method == "mixed"
    assert w.method_by_gpu[0] == "power-integral"
    assert w.joules_by_gpu[0] == pytest.approx(240.0)
    assert w.counter_vs_power_rel_diff(0) is None
    assert w.reliable
    meter.stop()


def test_power_integral_with_no_samples_inside_is_unreliable():
    _, clock, meter = make([FakeGpu(power_w=120.0, counter_period_s=None)])
    meter.begin("w")
    clock.advance(2.0)
    w = meter.end("w")
    assert w.joules_by_gpu[0] == pytest.approx(240.0)
    assert not w.reliable and any("two boundary samples" in n for n in w.notes)
    meter.stop()


def test_counter_going_backwards_is_flagged():
    fake, clock, meter = make(1)
    meter.begin("w")
    clock.advance(2.0)
    fake.gpus[0].counter_offset_mj = 0          # as if the driver reloaded
    w = meter.end("w")
    assert not w.reliable and any("backwards" in n for n in w.notes)
    meter.stop()


def test_timeline_records_power_clocks_temperature_reasons_and_is_bounded():
    fake, clock, meter = make([FakeGpu(power_w=300.0, reasons=0x4 | 0x1)], timeline_seconds=1.0)
    fake.fail("nvmlDeviceGetTemperature", NVML_ERROR_NOT_SUPPORTED, times=1)
    for _ in range(30):
        clock.advance(0.1)
        meter.sample_once()
    tl = meter.timeline()
    assert len(tl) == 10                        # 1 s at 0.1 s per sample, one GPU
    s = tl[-1]
    assert (s.power_w, s.sm_mhz, s.mem_mhz) == (300.0, 1980, 2619)
    assert s.temp_c is None                     # NOT_SUPPORTED once: never asked again
    assert nvmllib.decode_throttle_reasons(s.throttle_reasons) == ("gpu_idle", "sw_power_cap")
    assert sum(x.energy_j is not None for x in tl) == 1    # counter read every 10th sample only
    meter.stop()


def test_sampler_thread_samples_and_stops():
    fake = FakeNvml(1)
    meter = EnergyMeter([0], nvml=fake, sample_interval_s=0.005, measure_period=False)
    with meter:
        done = threading.Event()
        for _ in range(2000):                   # liveness bound, not a timing assertion
            if len(meter.timeline()) >= 5:
                done.set()
                break
            done.wait(0.005)
        assert done.is_set()
        assert meter.sampling
    assert not meter.sampling and not meter.running
    assert fake.inits == fake.shutdowns == 1
    assert meter.sampler_cpu_seconds >= 0.0


def test_meter_never_sets_anything_on_the_gpu():
    fake, clock, meter = make(1)
    with pytest.raises(PermissionError, match="read-only NVML view"):
        meter._nvml.nvmlDeviceSetGpuLockedClocks(meter._handles[0], 1000, 1000)
    assert fake.calls == []
    meter.stop()


def test_nvml_failing_to_start_is_reported_as_unavailable():
    fake = FakeNvml(1, init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(nvmllib.NvmlUnavailable, match="NVML could not start"):
        EnergyMeter([0], nvml=fake, sample_interval_s=None).start()


def test_bad_gpu_indices_are_rejected_and_nvml_released():
    fake = FakeNvml(2)
    with pytest.raises(ValueError, match=r"not present: NVML sees 2 GPU"):
        EnergyMeter([0, 5], nvml=fake, sample_interval_s=None).start()
    assert fake.inits == fake.shutdowns == 1
    with pytest.raises(ValueError, match="repeat"):
        EnergyMeter([1, 1], nvml=fake, sample_interval_s=None).start()
    with pytest.raises(ValueError, match="at least one GPU"):
        EnergyMeter([], nvml=fake)


def test_window_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="not started"):
        EnergyMeter([0], nvml=FakeNvml(1)).begin("w")


def test_results_are_immutable_and_round_trip_through_json():
    _, clock, meter = make(2)
    meter.measure_idle(1.0)
    meter.begin("w")
    clock.advance(1.5)
    w = meter.end("w")
    meter.stop()
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.name = "other"
    with pytest.raises(TypeError):
        w.joules_by_gpu[0] = 0.0
    back = EnergyWindow.from_json(json.loads(json.dumps(w.to_json())))
    assert back == w
    assert back.to_json()["total_joules"] == pytest.approx(w.total_joules)


class _FakeTorch:
    """Just enough torch for ``benchmarks/energy_meter.py``'s fixed work on the fake NVML: a
    matmul is 2.3 ms of device work at 600 W; after ``cuda.synchronize`` the GPU idles at 100 W."""

    def __init__(self, fake: FakeNvml, clock: FakeClock):
        self.fake, self.clock, self.busy = fake, clock, False
        self.cuda = SimpleNamespace(synchronize=self._synchronize)

    def matmul(self, a, b):
        if not self.busy:
            self.fake.set_power(0, 600.0)
            self.busy = True
        self.clock.advance(0.0023)

    def _synchronize(self):
        if self.busy:
            self.fake.set_power(0, 100.0)
            self.busy = False


def test_the_energy_meter_benchmark_sees_what_aligned_boundaries_buy():
    """benchmarks/energy_meter.py's side-by-side spread, on the fake NVML: J per fixed burst moves
    by the at-once boundaries' missed tails (up to 60 J), and far less with aligned ones."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "energy_meter.py"
    spec = importlib.util.spec_from_file_location("energy_meter_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    clock = FakeClock()
    fake = FakeNvml([FakeGpu(power_w=100.0)], clock=clock)
    spread = bench.boundary_spread(_FakeTorch(fake, clock), None, None, 0, bursts=20, seconds=1.5, clock=clock,
                                   sleep=clock.sleep, meter_options={"nvml": fake, "clock": clock, "sleep": clock.sleep,
                                                                     "wall_clock": lambda: 1.7e9})
    assert spread["batches"] == 33 and [len(j) for j in spread["joules"].values()] == [20, 20]
    assert spread["rel_sd"]["at_once"] > 0.005 and spread["sd_ratio"] < 0.5
