"""Latency-vs-energy Pareto frontier over the configurations of a run.

Why: the seed study's frequency-scaling question is a trade-off, not a single best point; what a
reader needs is which configurations no other one beats on both latency and energy. The result is
plain data (points, frontier flags, metric names) so the report can plot it from JSON.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    latency: float
    energy: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("a Pareto point needs a label")
        for name in ("latency", "energy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"point {self.label!r}: {name} must be a finite number, got {v!r}")
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def dominates(self, other: "ParetoPoint") -> bool:
        """No worse on both axes and better on one (both axes: lower is better)."""
        return (self.latency <= other.latency and self.energy <= other.energy
                and (self.latency < other.latency or self.energy < other.energy))

    def to_json(self) -> dict:
        return {"label": self.label, "latency": self.latency, "energy": self.energy, "meta": dict(self.meta)}


@dataclass(frozen=True)
class ParetoResult:
    """All points, with the frontier's labels in order of increasing latency."""

    latency_metric: str
    energy_metric: str
    points: tuple[ParetoPoint, ...]
    frontier: tuple[str, ...]

    def frontier_points(self) -> tuple[ParetoPoint, ...]:
        by_label = {p.label: p for p in self.points}
        return tuple(by_label[label] for label in self.frontier)

    def to_json(self) -> dict:
        on = set(self.frontier)
        return {
            "latency_metric": self.latency_metric,
            "energy_metric": self.energy_metric,
            "points": [{**p.to_json(), "on_frontier": p.label in on} for p in self.points],
            "frontier": list(self.frontier),
        }


def pareto(points: Iterable[ParetoPoint], *, latency_metric: str, energy_metric: str) -> ParetoResult:
    """The frontier: points no other point dominates. Equal points are all kept (neither beats the
    other). Labels must be unique, since the report refers to points by label."""
    pts = tuple(points)
    labels = [p.label for p in pts]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"Pareto point labels repeat: {dupes}")
    front = [p for p in pts if not any(q.dominates(p) for q in pts)]
    front.sort(key=lambda p: (p.latency, p.energy, p.label))
    return ParetoResult(latency_metric=latency_metric, energy_metric=energy_metric,
                        points=pts, frontier=tuple(p.label for p in front))
