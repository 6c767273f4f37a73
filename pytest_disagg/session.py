"""The session's state: what ``plugin.pytest_configure`` builds once and later hooks, fixtures and
each area's pytest wiring read, one ``config.stash`` key each, with its accessor.

It sits below everything that reads it and imports nothing of the package at run time (the types
are named for readers and type checkers only): ``bench.py``, ``ab/``, ``attach/``, ``energy/``,
``deploy/`` and ``export/`` read the session from here instead of importing the plugin that
wrote it, which is what kept the plugin and those modules in one import cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from .deploy import DeploymentPool
    from .mediums import InstallInfo, MediumRegistry  # noqa: F401  (named in INSTALL_KEY)
    from .options import DisaggOptions
    from .presets import Preset
    from .results import SessionResults

OPTIONS_KEY = pytest.StashKey["DisaggOptions"]()
POOL_KEY = pytest.StashKey["DeploymentPool"]()        # made when a test first asks for a deployment
REGISTRY_KEY = pytest.StashKey["MediumRegistry"]()
INSTALL_KEY = pytest.StashKey["InstallInfo"]()        # detected when a medium's availability is first asked
RESULTS_KEY = pytest.StashKey["SessionResults"]()
PRESET_KEY = pytest.StashKey["Preset | None"]()
ATTACH_KEY = pytest.StashKey[object]()                # the attach file's AttachConfig
ATTACHED_KEY = pytest.StashKey[object]()              # its AttachedDeployment (or AttachError), once checked
# Where ``disagg_energy_meter`` gets a meter for GPUs this process does not read through NVML
# (an attached deployment's DCGM exporters, Ray nodes' samplers): set by the plugin, which knows
# those areas; the energy wiring only asks.
REMOTE_METER_KEY = pytest.StashKey[Callable[[pytest.Config], Any]]()


def options_of(config: pytest.Config) -> DisaggOptions:
    return config.stash[OPTIONS_KEY]


def registry_of(config: pytest.Config) -> MediumRegistry:
    return config.stash[REGISTRY_KEY]


def results_of(config: pytest.Config) -> SessionResults:
    return config.stash[RESULTS_KEY]


def preset_of(config: pytest.Config) -> Preset | None:
    return config.stash[PRESET_KEY]


def existing_pool(config: pytest.Config) -> DeploymentPool | None:
    """The session's pool if a deployment was asked for, else None (nothing is created)."""
    return config.stash.get(POOL_KEY, None)


def attach_config_of(config: pytest.Config):
    """The ``--disagg-attach`` file's ``AttachConfig``, or None when the suite starts its own."""
    return config.stash.get(ATTACH_KEY, None)


def remote_meter(config: pytest.Config):
    """The session's meter for GPUs read elsewhere, or None: local NVML (see ``REMOTE_METER_KEY``)."""
    source = config.stash.get(REMOTE_METER_KEY, None)
    return source(config) if source is not None else None


__all__ = ["ATTACHED_KEY", "ATTACH_KEY", "INSTALL_KEY", "OPTIONS_KEY", "POOL_KEY", "PRESET_KEY", "REGISTRY_KEY",
           "REMOTE_METER_KEY", "RESULTS_KEY", "attach_config_of", "existing_pool", "options_of", "preset_of",
           "registry_of", "remote_meter", "results_of"]
