"""Cumulative trapezoid integration of power samples into energy.

Why: GPUs without an energy counter (pre-Volta), the counter cross-check and IPMI node power all
need energy from power samples, and windows need "energy so far" at arbitrary instants without
keeping every sample. One running integrator per source serves them all: a window subtracts the
value at its start from the value at its end, so the sample history can stay bounded.
"""
from __future__ import annotations

import math


class PowerIntegrator:
    """Running integral of power (W) over time (s), in joules.

    ``add(t, watts)`` takes samples in time order; ``value_at(t)`` extends the last sample's power
    flat up to ``t`` (the best guess until the next sample arrives). Not thread-safe: callers hold
    their own lock.
    """

    def __init__(self) -> None:
        self._t: float | None = None
        self._w: float | None = None
        self._joules = 0.0
        self.samples = 0

    def add(self, t: float, watts: float) -> None:
        if not math.isfinite(watts) or watts < 0:
            raise ValueError(f"power sample must be finite and >= 0 W, got {watts!r}")
        if self._t is not None:
            if t < self._t:
                raise ValueError(f"power samples out of order: {t} after {self._t}")
            self._joules += (self._w + watts) / 2.0 * (t - self._t)
        self._t, self._w = t, watts
        self.samples += 1

    @property
    def last_t(self) -> float | None:
        """Time of the latest sample; a sample older than this cannot be added any more."""
        return self._t

    def value_at(self, t: float) -> float | None:
        """Joules integrated from the first sample up to ``t``; None before any sample."""
        if self._t is None:
            return None
        return self._joules + self._w * max(0.0, t - self._t)
