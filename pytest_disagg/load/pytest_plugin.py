"""pytest wiring of the load generator: the ``disagg_load`` fixture. Thin: the work is in runner.py.

``run = disagg_load(deployment, workload)`` runs the workload against the deployment and returns
the :class:`~pytest_disagg.load.RunResult`; a run with more than 1 % failed requests (option
``--disagg-max-failures``, ini ``disagg_max_failures``) fails the test, showing the first failures.
The progress bar follows ``runner.progress_wanted`` (a terminal, not CI) unless the test passes
``progress=``.
"""
from __future__ import annotations

import pytest

from .result import DEFAULT_MAX_FAILURE_FRACTION
from .runner import run_workload
from ..optionspec import Option, add_options, option_value

OPTIONS = (
    Option("--disagg-max-failures", "disagg_max_failures", "fraction of failed requests above which a load run "
           f"fails its test (default {DEFAULT_MAX_FAILURE_FRACTION})", str(DEFAULT_MAX_FAILURE_FRACTION),
           metavar="F"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def max_failures(config: pytest.Config) -> float:
    flag, ini = OPTIONS[0].flag, OPTIONS[0].ini
    raw = option_value(config, ini)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{flag}: {raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise pytest.UsageError(f"{flag}: {value} is not a fraction between 0 and 1")
    return value


def pytest_configure(config: pytest.Config) -> None:
    max_failures(config)   # a bad value is a usage error at start, not a failing fixture later


@pytest.fixture
def disagg_load(pytestconfig):
    """Run a workload against a deployment: ``run = disagg_load(deployment, spec, **run_workload_kwargs)``."""
    limit = max_failures(pytestconfig)

    def run(deployment, workload, **kwargs):
        result = run_workload(deployment, workload, **kwargs)
        message = result.failure_message(limit)
        if message:
            pytest.fail(message, pytrace=False)
        return result
    return run
