"""Skips decided at collection, before any fixture: no deployment starts for a test that would skip."""
from __future__ import annotations

from pytest_disagg.presets import load_preset

BODY = """
import pytest

@pytest.mark.preset
def test_batch(disagg_deployment):
    raise AssertionError("must not run without a preset")

def test_energy(disagg_deployment, disagg_energy_meter):
    raise AssertionError("must not run without NVML")
"""


def test_preset_and_energy_tests_skip_before_any_deployment_starts(pytester):
    pytester.makepyfile(test_s=BODY)
    result = pytester.runpytest("-v", "-rs", "--disagg-mediums=colocated", "--disagg-prefix-caching=off")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str()
    assert "belongs to a preset" in out and "no GPU energy measurement" in out
    assert "disagg: starting" not in out          # the progress line every deployment start prints


def test_presets_warm_up_once_per_batch_by_default():
    for name in ("paper", "paper-quick"):
        assert load_preset(name).workload("cpu", 0)["warmup"] == 1
