"""Each area's pytest wiring (its options, fixtures and hooks), which ``plugin.py`` loads as its
``pytest_plugins``.

Marked for pytest's assertion rewriting as soon as this module is imported, i.e. before
``plugin.py`` imports helpers from them (``pool_of``, ``ab_session``, ...): pytest marks the modules
of ``pytest_plugins`` only once the plugin has been imported, and warns about each that was
imported before ("Module already imported so cannot be rewritten") where the package is installed
in editable mode, as tox installs it.
"""
from __future__ import annotations

import pytest

AREA_PLUGINS = (
    "pytest_disagg.energy.pytest_plugin",
    "pytest_disagg.baseline.pytest_plugin",
    "pytest_disagg.load.pytest_plugin",
    "pytest_disagg.export.pytest_plugin",
    "pytest_disagg.ab.pytest_plugin",
    "pytest_disagg.deploy.pytest_plugin",
)
pytest.register_assert_rewrite(*AREA_PLUGINS)
