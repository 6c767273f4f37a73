"""pytest wiring of the deployment layer's fault handling (registered by ``pytest_disagg.plugin``).

- At start: report what a killed earlier session left (``leftovers``); remove it with
  ``--disagg-cleanup-stale`` (ini ``disagg_cleanup_stale``).
- After each test on a deployment: if one of its processes died during the test, the test fails
  with that process's exit status and log tail, and the pool starts the deployment afresh for the
  next test that needs it.
"""
from __future__ import annotations

import pytest

from . import leftovers
from ..options import Option, add_options, option_value

OPTIONS = (
    Option("--disagg-cleanup-stale", "disagg_cleanup_stale", "end the processes and remove the temporary "
           "directories a killed earlier pytest-disagg session left (they are always reported at start)", switch=True),
)
_REPORT_KEY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def _lock_files(config) -> list:
    try:
        from ..baseline.pytest_plugin import SETTINGS_KEY
        from ..baseline.store import LOCK_NAME

        return [config.stash[SETTINGS_KEY].directory / LOCK_NAME]
    except (ImportError, KeyError):
        return []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):       # xdist workers: the controller looks once
        return
    cleanup = option_value(config, "disagg_cleanup_stale")
    stale = leftovers.find(lock_files=_lock_files(config))
    lines: list[str] = []
    quiet = [s for s in stale if s.empty() and not s.bad_state]
    leftovers.clean(quiet)                   # a killed session that left nothing: forget its state
    loud = [s for s in stale if s not in quiet]
    if loud:
        lines.append("disagg: a killed earlier session left these behind:")
        for s in loud:
            lines += ["  " + line for line in s.lines()]
        if cleanup:
            lines += ["disagg: --disagg-cleanup-stale:"] + ["  " + line for line in leftovers.clean(loud)]
        else:
            lines.append("disagg: rerun with --disagg-cleanup-stale to end and remove them")
    config.stash[_REPORT_KEY] = lines


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash.get(_REPORT_KEY, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or "disagg_deployment_config" not in getattr(item, "funcargs", {}):
        return
    from ..plugin import _POOL_KEY

    pool = item.config.stash.get(_POOL_KEY, None)
    if pool is None:
        return
    text = pool.check(item.funcargs["disagg_deployment_config"], stage=f"during test {item.name}")
    if text is None:
        return
    text += "\n(the pool starts this deployment again for the next test that needs it)"
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("disagg: a deployment process died", text))
