"""The gate's settings (mode, directory, refresh, tolerances, confidence), parsed and validated.

Kept apart from the pytest wiring so every rule about what a value may be is in one place and
testable without pytest; each error names the option and shows what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .gate import DEFAULT_CONFIDENCE
from ..metrics import DEFAULT_TOLERANCES

MODES = ("off", "warn", "check", "strict")
DEFAULT_MODE = "check"


class SettingsError(ValueError):
    """A bad setting; the plugin turns it into a usage error."""


@dataclass(frozen=True)
class Settings:
    """``mode``: off (no baselines), warn (report, never fail), check (regressions fail; a missing
    baseline records a candidate), strict (regressions and missing/mismatched baselines fail)."""

    mode: str = DEFAULT_MODE
    directory: Path = Path("baselines")
    refresh: bool = False
    tolerances: Mapping[str, float] = field(default_factory=dict)
    confidence: float = DEFAULT_CONFIDENCE


def parse_mode(value: str | None) -> str:
    mode = (value or DEFAULT_MODE).strip().lower()
    if mode not in MODES:
        raise SettingsError(f"--disagg-baseline={value!r}: allowed values are {', '.join(MODES)}")
    return mode


def parse_fraction(text: str, option: str) -> float:
    """``"5%"``, ``"5 %"`` or ``"0.05"`` → 0.05; must lie in [0, 1). A bare ``95`` is refused, not
    read as 95 %: ``1`` would then be 1 % as a tolerance yet 100 % as a fraction, so the error says
    both spellings instead of guessing."""
    raw = text.strip()
    allowed = "give a fraction below 1 (e.g. 0.05) or a percent (e.g. 5%)"
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise SettingsError(f"{option}={text!r}: not a number; {allowed}") from None
    if 1.0 <= value < 100.0 and not raw.endswith("%"):
        raise SettingsError(f"{option}={text!r}: a fraction must be below 1; give {value / 100:g} or {raw}%")
    if not 0.0 <= value < 1.0:
        raise SettingsError(f"{option}={text!r}: must be at least 0 and below 100 %; {allowed}")
    return value


def parse_tolerance(value: str | None) -> dict[str, float]:
    """``"3%"`` (every metric) or ``"latency=2%,throughput=10%,ttft_ms=1.5%"`` (by family or metric).

    Keys are a family (``latency``, ``throughput``, ``energy``, ``other``) or a metric name; a bare
    value applies to every metric not named otherwise (key ``*``).
    """
    out: dict[str, float] = {}
    if value is None or not value.strip():
        return out
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, number = part.partition("=")
        if not sep:
            key, number = "*", part
        key = key.strip()
        if not key:
            raise SettingsError(f"--disagg-tolerance: {part!r} has an empty name before '='")
        out[key] = parse_fraction(number, f"--disagg-tolerance ({key})")
    return out


def parse_bool(value, option: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{option}: {value!r} is not a boolean (true/false)")


def build(*, mode: str | None = None, directory: str | Path | None = None, refresh=None,
          tolerance: str | None = None, confidence: str | float | None = None) -> Settings:
    conf = DEFAULT_CONFIDENCE if confidence in (None, "") else parse_fraction(str(confidence), "--disagg-gate-confidence")
    if conf <= 0.0:
        raise SettingsError(f"--disagg-gate-confidence={confidence!r}: must be above 0; give e.g. 0.95 or 95%")
    return Settings(
        mode=parse_mode(mode),
        directory=Path(directory) if directory else Path("baselines"),
        refresh=parse_bool(refresh, "--disagg-refresh-baselines"),
        tolerances=parse_tolerance(tolerance),
        confidence=conf,
    )


def describe_tolerances(tolerances: Mapping[str, float], defaults: Mapping[str, float] | None = None) -> str:
    merged = {**(defaults or DEFAULT_TOLERANCES), **tolerances}
    return ", ".join(f"{k}={v * 100:g}%" for k, v in merged.items())


__all__ = ["DEFAULT_MODE", "MODES", "Settings", "SettingsError", "build", "describe_tolerances",
           "parse_bool", "parse_fraction", "parse_mode", "parse_tolerance"]
