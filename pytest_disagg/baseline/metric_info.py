"""Direction, unit and family of a metric, and the default tolerance of each family.

Why the gate needs this: "worse" means larger for a latency and smaller for a throughput, and a
fair tolerance differs by family (a per-request latency median is tight; a run-level throughput
from one window is not). The rule reads the metric's name the way the suite names metrics
(``ttft_ms``, ``output_throughput``, ``j_per_token``), and callers can state any metric
explicitly (``directions={...}``); a name the rule cannot place is an error, never a guess.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

DIRECTIONS = ("lower", "higher")

# Default tolerance by family (fraction), by kind of host. The gate fails only when the CI of the
# ratio of medians lies beyond the tolerance, so the tolerance must exceed the drift between two
# deployments of the same software, which a per-run CI cannot see. benchmarks/gate_power.py
# measured that drift on real vLLM (colocated, tiny model) on the shared 2-core CPU box, every run
# a freshly started deployment: median TTFT of 5 runs spread over 17 %, and a 15 % latency
# tolerance was the smallest swept value with false alarms near 1 % at every sample size up to 200
# (n = 200: 1.3 % on TTFT, 2.0 % on any of TTFT/TPOT/E2E; the load sweep's n = 40: 0.0 %; 10 %
# gave 1.0 % / 2.2 % at n = 40 but 7 % at n = 200). Hosts without a GPU get CPU_HOST_TOLERANCES
# (throughput and energy set alike: not measured separately). GPU hosts keep the customary 5 %
# until gate_power.py has been run on one (the GPU issue). Override with --disagg-tolerance.
DEFAULT_TOLERANCES = {
    "latency": 0.05,
    "throughput": 0.10,
    "energy": 0.10,
    "other": 0.05,
}
CPU_HOST_TOLERANCES = {
    "latency": 0.15,
    "throughput": 0.15,
    "energy": 0.15,
    "other": 0.15,
}


def default_tolerances(machine: Mapping | None = None) -> dict[str, float]:
    """The family defaults for a machine (its fingerprint's machine fields): CPU-only hosts drift more."""
    if machine is not None and not machine.get("gpu_count"):
        return dict(CPU_HOST_TOLERANCES)
    return dict(DEFAULT_TOLERANCES)


# (pattern on the name, direction, family, unit) — first match wins.
_RULES: tuple[tuple[str, str, str, str], ...] = (
    (r"(^|_)(j|joules?)_per_", "lower", "energy", "J"),
    (r"_per_j(oule)?$", "higher", "energy", "1/J"),
    (r"(^|_)(energy|joules?)(_|$)|_j$", "lower", "energy", "J"),
    (r"_w$|(^|_)power(_|$)", "lower", "energy", "W"),
    (r"throughput|goodput|_per_s$|_tok_s$|_rps$", "higher", "throughput", "1/s"),
    (r"_ms$", "lower", "latency", "ms"),
    (r"_us$", "lower", "latency", "us"),
    (r"_s$", "lower", "latency", "s"),
)


class MetricInfoError(ValueError):
    """A metric whose direction is unknown, or a direction that is not lower/higher."""


# Metrics with one sample per generated token rather than per request (vLLM's ITL): their samples
# are not independent, so the gate takes the request as the unit (see bootstrap.bootstrap_medians).
PER_TOKEN = re.compile(r"^itl(_|$)")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    direction: str      # "lower" | "higher": which way is better
    family: str         # key of DEFAULT_TOLERANCES
    unit: str

    @property
    def per_token(self) -> bool:
        return bool(PER_TOKEN.search(self.name))


def describe(name: str, directions: Mapping[str, str] | None = None) -> MetricInfo:
    """How to read ``name``; ``directions`` overrides (or supplies) the direction by metric name."""
    override = (directions or {}).get(name)
    if override is not None and override not in DIRECTIONS:
        raise MetricInfoError(f"metric {name!r}: direction {override!r} must be one of {DIRECTIONS}")
    for pattern, direction, family, unit in _RULES:
        if re.search(pattern, name):
            return MetricInfo(name, override or direction, family, unit)
    if override is not None:
        return MetricInfo(name, override, "other", "")
    raise MetricInfoError(
        f"metric {name!r}: cannot tell whether lower or higher is better from its name; "
        f"pass directions={{{name!r}: 'lower' | 'higher'}}")


def tolerance_for(info: MetricInfo, overrides: Mapping[str, float] | None = None,
                  defaults: Mapping[str, float] | None = None) -> float:
    """Tolerance of a metric: by metric name, else by family, else ``*``, else the family default
    (``defaults``, e.g. :func:`default_tolerances` of the machine; GPU-host defaults if None)."""
    overrides = overrides or {}
    if info.name in overrides:
        return float(overrides[info.name])
    if info.family in overrides:
        return float(overrides[info.family])
    if "*" in overrides:
        return float(overrides["*"])
    return (defaults or DEFAULT_TOLERANCES)[info.family]


__all__ = ["CPU_HOST_TOLERANCES", "DEFAULT_TOLERANCES", "DIRECTIONS", "PER_TOKEN", "MetricInfo", "MetricInfoError",
           "default_tolerances", "describe", "tolerance_for"]
