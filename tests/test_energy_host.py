"""RAPL (fake sysfs tree: wrap, missing domains, permissions) and IPMI (parser, unavailability)."""
from __future__ import annotations

import pathlib
import subprocess

import pytest

from fake_nvml import FakeClock
from pytest_disagg.energy.ipmi import (IpmiUnavailable, NodePowerMeter, parse_power_reading,
                                       read_node_power)
from pytest_disagg.energy.rapl import RaplMeter, discover, wrap_delta

MAX = 262_143_328_850


def zone(root, name, label, energy, max_range=MAX):
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def set_energy(d, value):
    (d / "energy_uj").write_text(f"{value}\n")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "powercap"
    z = {
        "pkg0": zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "core0": zone(root, "intel-rapl:0:0", "core", 5),
        "dram0": zone(root, "intel-rapl:0:1", "dram", 2_000_000),
        "pkg1": zone(root, "intel-rapl:1", "package-1", MAX - 1_000_000),
        "dram1": zone(root, "intel-rapl:1:0", "dram", 0),
    }
    zone(root, "intel-rapl-mmio:0", "package-0", 123)       # duplicate of the package: ignored
    (root / "intel-rapl").mkdir()                           # the control type directory
    return root, z


def test_package_and_dram_summed_over_sockets_with_wrap(tree):
    root, z = tree
    clock = FakeClock()
    rapl = RaplMeter(root=root, poll_interval_s=None, clock=clock)
    rapl.begin("run")
    set_energy(z["pkg0"], 31_000_000)              # +30 J
    set_energy(z["pkg1"], 4_000_000)               # wrapped: +1 J to the top, +4 J after
    set_energy(z["dram0"], 7_000_000)              # +5 J
    set_energy(z["dram1"], 2_500_000)              # +2.5 J
    clock.advance(10.0)
    pkg, dram = rapl.end("run")
    assert (pkg.component, pkg.method, pkg.seconds) == ("cpu-package", "rapl", 10.0)
    assert pkg.joules == pytest.approx(35.0)
    assert dict(pkg.detail) == {"socket0": pytest.approx(30.0), "socket1": pytest.approx(5.0)}
    assert dram.joules == pytest.approx(7.5)


def test_polling_between_reads_survives_more_than_one_wrap(tree):
    root, z = tree
    rapl = RaplMeter(["package"], root=root, poll_interval_s=None)
    rapl.begin("long")
    for value in (MAX - 10, 1_000, MAX - 10, 2_000):       # socket 0 wraps twice
        set_energy(z["pkg0"], value)
        rapl.poll()
    (pkg,) = rapl.end("long")
    expected_uj = (MAX - 10 - 1_000_000) + (1_000 + 10) + (MAX - 10 - 1_000) + (2_000 + 10)
    assert pkg.detail["socket0"] == pytest.approx(expected_uj / 1e6)


def test_wrap_delta():
    assert wrap_delta(10, 25, 100) == 15
    assert wrap_delta(90, 5, 100) == 15


def test_no_powercap_means_unavailable_never_zero(tmp_path):
    rapl = RaplMeter(root=tmp_path / "missing", poll_interval_s=None)
    rapl.begin("w")
    figs = rapl.end("w")
    assert [f.component for f in figs] == ["cpu-package", "dram"]
    for f in figs:
        assert f.joules is None and not f.available and "does not exist" in f.unavailable


def test_missing_dram_zone_is_unavailable_alone(tmp_path):
    root = tmp_path / "pc"
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    rapl = RaplMeter(root=root, poll_interval_s=None)
    rapl.begin("w")
    set_energy(pkg, 3_000_000)
    p, d = rapl.end("w")
    assert p.joules == pytest.approx(3.0)
    assert d.joules is None and "no RAPL dram zone" in d.unavailable


def test_root_only_energy_files_are_unavailable(tree, monkeypatch):
    root, _ = tree
    real = pathlib.Path.read_text

    def guarded(self, *a, **kw):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "read_text", guarded)
    rapl = RaplMeter(root=root, poll_interval_s=None)
    assert "root-only" in rapl.unavailable("package")
    rapl.begin("w")
    assert all(f.joules is None for f in rapl.end("w"))


def test_discover_reports_unreadable_zone(tmp_path):
    root = tmp_path / "pc"
    (root / "intel-rapl:0").mkdir(parents=True)
    zones, problems = discover(root)
    assert zones == () and "intel-rapl:0" in problems
    with pytest.raises(ValueError, match="unknown RAPL domain"):
        RaplMeter(["gpu"], root=root)


def test_rapl_poller_thread_starts_and_stops(tree):
    root, _ = tree
    with RaplMeter(root=root, poll_interval_s=0.01) as rapl:
        assert rapl.polling
    assert not rapl.polling


# -- IPMI ------------------------------------------------------------------------------------
DCMI = """
    Instantaneous power reading:                   412 Watts
    Minimum during sampling period:                 38 Watts
    Maximum during sampling period:                604 Watts
    Average power reading over sample period:      398 Watts
    IPMI timestamp:                           Tue Nov 25 05:00:00 2025
    Sampling period:                          00000005 Seconds.
    Power reading state is:                   activated
"""


def test_parse_dcmi_power_reading():
    r = parse_power_reading(DCMI)
    assert (r.instantaneous_w, r.minimum_w, r.maximum_w, r.average_w) == (412.0, 38.0, 604.0, 398.0)
    assert r.sampling_period_s == 5.0 and r.active


def test_parse_rejects_deactivated_and_garbage():
    with pytest.raises(IpmiUnavailable, match="deactivated"):
        parse_power_reading(DCMI.replace("activated", "deactivated"))
    with pytest.raises(IpmiUnavailable, match="no instantaneous power"):
        parse_power_reading("Error: no response from BMC")


def completed(stdout="", returncode=0, stderr=""):
    return subprocess.CompletedProcess(["ipmitool"], returncode, stdout, stderr)


def test_read_node_power_unavailable_paths():
    with pytest.raises(IpmiUnavailable, match="not installed"):
        read_node_power(which=lambda name: None)
    with pytest.raises(IpmiUnavailable, match=r"exited 1: Could not open device"):
        read_node_power(which=lambda n: "/usr/bin/ipmitool",
                        runner=lambda *a, **k: completed(returncode=1, stderr="Could not open device at /dev/ipmi0"))


def test_node_power_meter_integrates_readings():
    clock = FakeClock()
    watts = iter([400, 400, 500, 600, 600])
    runner = lambda *a, **k: completed(DCMI.replace("412", str(next(watts))))  # noqa: E731
    meter = NodePowerMeter(interval_s=None, runner=runner, which=lambda n: "/x/ipmitool", clock=clock)
    clock.advance(1.0)
    meter.begin("w")                  # 400 W
    clock.advance(1.0)
    meter.sample_once()               # 500 W
    clock.advance(1.0)
    meter.sample_once()               # 600 W
    clock.advance(1.0)
    fig = meter.end("w")              # 600 W
    assert fig.joules == pytest.approx(450 + 550 + 600)
    assert fig.seconds == 3.0 and fig.method == "ipmi-power-integral" and fig.reliable


def test_node_power_meter_without_ipmitool_is_unavailable():
    meter = NodePowerMeter(interval_s=None, which=lambda n: None)
    with meter.window("w") as out:
        pass
    (fig,) = out
    assert fig.joules is None and "not installed" in fig.unavailable
