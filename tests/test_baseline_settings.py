"""The gate's settings: modes, tolerance specs, booleans and confidence, with errors naming the option."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_disagg.baseline import settings


def test_defaults():
    s = settings.build()
    assert s.mode == "check" and s.directory == Path("baselines") and not s.refresh and s.tolerances == {}
    assert 0.9 < s.confidence < 1.0


@pytest.mark.parametrize("spec, expected", [
    ("5%", {"*": 0.05}),
    ("0.05", {"*": 0.05}),
    (" 3 %, latency=2%, ttft_ms=1.5% ", {"*": 0.03, "latency": 0.02, "ttft_ms": 0.015}),
    ("", {}),
    (None, {}),
])
def test_tolerance_specs(spec, expected):
    assert settings.parse_tolerance(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec, message", [
    ("fast", "='fast': not a number"),
    ("=5%", "empty name"),
    ("latency=100%", "below 100 %"),
    ("-1%", "at least 0"),
])
def test_bad_tolerance_specs(spec, message):
    with pytest.raises(settings.SettingsError, match=message):
        settings.parse_tolerance(spec)


def test_modes_booleans_and_confidence():
    assert settings.build(mode=" STRICT ").mode == "strict"
    with pytest.raises(settings.SettingsError, match="allowed values are off, warn, check, strict"):
        settings.build(mode="fail")
    assert settings.build(refresh="yes").refresh and not settings.build(refresh="0").refresh
    with pytest.raises(settings.SettingsError, match="--disagg-refresh-baselines"):
        settings.build(refresh="perhaps")
    assert settings.build(confidence="95%").confidence == pytest.approx(0.95)
    with pytest.raises(settings.SettingsError, match="--disagg-gate-confidence"):
        settings.build(confidence="0")
