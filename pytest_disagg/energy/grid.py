"""The prefill-clock × decode-clock grid for frequency-scaling runs.

Why: the seed study sampled clocks evenly between 0.36 and 1.26 GHz and combined the prefill and
decode curves. Here each grid point is one configuration a test runs; the values are snapped to
what the GPUs support (two requested values that snap to the same clock become one point, so the
grid never runs a configuration twice under two names).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

from .clocks import ClockError, StageClocks, snap

STUDY_RANGE_MHZ = (360, 1260)


@dataclass(frozen=True)
class DvfsPoint:
    """One configuration: SM clock of the prefill GPU(s) and of the decode GPU(s)."""

    prefill_sm_mhz: int
    decode_sm_mhz: int

    @property
    def id(self) -> str:
        return f"p{self.prefill_sm_mhz}-d{self.decode_sm_mhz}"

    @property
    def prefill(self) -> StageClocks:
        return StageClocks(sm_mhz=self.prefill_sm_mhz)

    @property
    def decode(self) -> StageClocks:
        return StageClocks(sm_mhz=self.decode_sm_mhz)

    def to_json(self) -> dict:
        return {"id": self.id, "prefill_sm_mhz": self.prefill_sm_mhz, "decode_sm_mhz": self.decode_sm_mhz}


def evenly_spaced(lo_mhz: int, hi_mhz: int, n: int) -> tuple[int, ...]:
    """``n`` values from ``lo`` to ``hi`` inclusive, rounded to whole MHz."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ClockError(f"grid size must be an int >= 1, got {n!r}")
    if lo_mhz <= 0 or hi_mhz < lo_mhz:
        raise ClockError(f"grid bounds must satisfy 0 < lo <= hi, got {lo_mhz}..{hi_mhz}")
    if n == 1:
        if lo_mhz != hi_mhz:
            raise ClockError("a one-point grid needs lo == hi")
        return (lo_mhz,)
    step = (hi_mhz - lo_mhz) / (n - 1)
    return tuple(int(round(lo_mhz + i * step)) for i in range(n))


def parse_range_spec(spec: str) -> tuple[int, int, int]:
    """``"LO:HI:N"`` in MHz, e.g. ``"360:1260:4"`` → (360, 1260, 4)."""
    parts = str(spec).strip().split(":")
    if len(parts) != 3:
        raise ClockError(f"clock grid spec must be LO:HI:N in MHz (e.g. 360:1260:4), got {spec!r}")
    try:
        lo, hi, n = (int(p) for p in parts)
    except ValueError:
        raise ClockError(f"clock grid spec must be three integers LO:HI:N, got {spec!r}") from None
    evenly_spaced(lo, hi, n)  # validates
    return lo, hi, n


def snap_values(values: Sequence[int], supported: Sequence[int], *, policy: str = "nearest") -> tuple[int, ...]:
    """Snap each value to a supported clock; sorted, without repeats."""
    return tuple(sorted({snap(v, supported, policy=policy, what="grid SM clock") for v in values}))


def dvfs_grid(
    prefill_mhz: Sequence[int],
    decode_mhz: Sequence[int],
    *,
    prefill_supported: Sequence[int] | None = None,
    decode_supported: Sequence[int] | None = None,
    policy: str = "nearest",
) -> tuple[DvfsPoint, ...]:
    """Every (prefill, decode) pair; values are snapped where the supported lists are given."""
    if not prefill_mhz or not decode_mhz:
        raise ClockError("both stages need at least one clock value")
    pre = snap_values(prefill_mhz, prefill_supported, policy=policy) if prefill_supported else tuple(sorted(set(prefill_mhz)))
    dec = snap_values(decode_mhz, decode_supported, policy=policy) if decode_supported else tuple(sorted(set(decode_mhz)))
    return tuple(DvfsPoint(p, d) for p, d in itertools.product(pre, dec))
