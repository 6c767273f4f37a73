"""Hooks users implement in their conftest.py to extend the suite instead of forking it."""
from __future__ import annotations


def pytest_disagg_register_mediums(registry):
    """Add or replace transfer mediums: ``registry.register(Medium(...))``."""


def pytest_disagg_update_fingerprint(config, fingerprint: dict):
    """Add fields to the machine/software fingerprint that keys baselines (mutate ``fingerprint``)."""


def pytest_disagg_update_json(config, results: dict):
    """Change the results JSON just before it is written (mutate ``results``)."""


def pytest_disagg_deployment_config(config, deployment_config):
    """Return a changed DeploymentConfig (e.g. extra server args) or None to keep it."""
