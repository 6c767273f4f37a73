"""Which real-deployment tests `tox -e test` (CI) leaves to `tox -e full` (the ``repeats`` marker),
and one start per deployment: its tests run together.

CI keeps one deployment per medium kind, chosen so that it covers the most paths of that kind:
prefix caching off for the colocated mediums (colocated-pc0 is the greedy reference and the load
tests' deployment), on for the hand-off mediums (their properties then also prove that a cached
prefix is not moved again; a request without a shared prefix takes the prefix-caching-off path).
The other prefix-caching setting of a medium only repeats those paths, at one or two more
deployment starts (its ctx variant for the equality property) on a 2-core box.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
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


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    """Marks before ``-m`` deselects (a wrapper runs around the mark plugin's hook); regroups after
    pytest has ordered the items by fixture."""
    for item in items:
        dc = deployment_of(item)
        if dc is not None and repeats_kept_deployment(dc):
            item.add_marker(pytest.mark.repeats)
    yield
    items[:] = grouped_by_deployment(items)


def grouped_by_deployment(items: list) -> list:
    """pytest's reordering by session parameter leaves colocated-pc0's last four properties behind
    the colocated-dp group (the other-architectures test's second session parameter splits it):
    colocated-pc0 started twice, ~80 s on a 2-core box. Each deployment's tests are pulled up to
    its first one, the groups kept in pytest's order."""
    groups: dict[str, list] = {}
    order: list[list] = []
    for item in items:
        dc = deployment_of(item)
        key = None if dc is None else dc.key()
        if key is None:
            order.append([item])
        elif key in groups:
            groups[key].append(item)
        else:
            groups[key] = [item]
            order.append(groups[key])
    return [item for group in order for item in group]


def deployment_of(item):
    """The session deployment a test of this directory runs on, or None (tests/benchmarks are
    the main job's, which runs every deployment and orders its own)."""
    if item.path.parent != Path(__file__).parent:
        return None
    return getattr(getattr(item, "callspec", None), "params", {}).get("disagg_deployment_config")


def pytest_configure(config):
    """Ctrl-C reaches the children the tests interrupt, even when this pytest was started with
    SIGINT ignored (a background job of a non-interactive shell: bash starts it that way, and an
    ignored signal is inherited across exec). Otherwise every SIGINT test fails, and the interrupt
    during server start-up first waits out its 120 s (CI, 2026-12-07). A handler, unlike an
    ignored signal, is reset to the default action in a child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tox_test_commands() -> list[list[str]]:
    """The two pytest commands `tox -e test` runs side by side (scripts/tox_test.sh): the tests
    without a vLLM server, then the real deployments."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["bash", str(root / "scripts" / "tox_test.sh"), "--print"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]
