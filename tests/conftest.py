"""Which real-deployment tests `tox -e test` (CI) leaves to `tox -e full`: the ``repeats`` marker.

CI keeps one deployment per medium kind, chosen so that it covers the most paths of that kind:
prefix caching off for the colocated mediums (colocated-pc0 is the greedy reference and the load
tests' deployment), on for the hand-off mediums (their properties then also prove that a cached
prefix is not moved again; a request without a shared prefix takes the prefix-caching-off path).
The other prefix-caching setting of a medium only repeats those paths, at one or two more
deployment starts (its ctx variant for the equality property) on a 2-core box.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_disagg.mediums import MediumRegistry

_BUILTIN = MediumRegistry()


def repeats_kept_deployment(config) -> bool:
    """Is ``config`` the other prefix-caching setting of a builtin medium CI keeps one setting of?"""
    medium = getattr(config, "medium", None)      # an attached deployment's parameter is no config
    if medium not in _BUILTIN.names() or config.variant or config.label:
        return False
    return config.prefix_caching != _BUILTIN.get(config.medium).disaggregated


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marked before ``-m`` deselects (the mark plugin's hook runs after a tryfirst one). The
    benchmarks (tests/benchmarks) are the main job's, which runs every deployment: not marked."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent != here:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        dc = params.get("disagg_deployment_config")
        if dc is not None and repeats_kept_deployment(dc):
            item.add_marker(pytest.mark.repeats)
