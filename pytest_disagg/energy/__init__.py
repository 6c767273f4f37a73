"""Energy measurement and GPU frequency control for disaggregated-serving benchmarks.

Library only (no pytest here; ``pytest_plugin.py`` wraps it). One job per module:

- ``nvml``: GPU energy windows over the NVML counter, with a sampled timeline;
- ``attribution``: prefill vs decode vs shared energy, J per token / request, totals;
- ``rapl`` / ``ipmi``: CPU package and DRAM energy, whole-node power, or "unavailable";
- ``clocks`` (+ ``restore``): validated, stage-wise locked clocks that are always reset;
- ``grid``: the prefill-clock × decode-clock configurations; ``pareto``: the latency/energy frontier;
- ``results``: the immutable result types and their JSON; ``nvmllib``: NVML access and its read-only view.
"""
from .attribution import Attribution, StageEnergy, attribute, gpus_by_role
from .clocks import (
    ClockController,
    ClockError,
    ClockPermissionError,
    ClockPlan,
    ClockRestoreError,
    ClockSupportError,
    StageClocks,
    stage_settings,
)
from .grid import DvfsPoint, dvfs_grid, evenly_spaced, parse_range_spec
from .nvml import EnergyMeter, MeterInfo, WindowHandle
from .nvmllib import NvmlUnavailable
from .pareto import ParetoPoint, ParetoResult, pareto
from .rapl import RaplMeter
from .ipmi import NodePowerMeter, parse_power_reading
from .results import CounterPeriod, EnergyFigure, EnergyWindow, IdleBaseline, TimelineSample

__all__ = [
    "Attribution", "ClockController", "ClockError", "ClockPermissionError", "ClockPlan",
    "ClockRestoreError", "ClockSupportError", "CounterPeriod", "DvfsPoint", "EnergyFigure",
    "EnergyMeter", "EnergyWindow", "IdleBaseline", "MeterInfo", "NodePowerMeter", "NvmlUnavailable",
    "ParetoPoint", "ParetoResult", "RaplMeter", "StageClocks", "StageEnergy", "TimelineSample",
    "WindowHandle", "attribute", "dvfs_grid", "evenly_spaced", "gpus_by_role", "pareto",
    "parse_power_reading", "parse_range_spec", "stage_settings",
]
