"""The gate's bootstrap: now :mod:`pytest_disagg.stats` (the one statistics module); these names
stay for code that imports them from here."""
from __future__ import annotations

from ..stats import DEFAULT_RESAMPLES, DEFAULT_SEED, as_samples, bootstrap_medians, median_ci, ratio_of_medians
from ..stats import StatsError as SampleError

__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "SampleError", "as_samples", "bootstrap_medians",
           "median_ci", "ratio_of_medians"]
