"""Where the data the package ships lies: inside the package when installed, beside it in a clone.

The repository keeps the study's benchmarks in ``tests/benchmarks/`` and the model configs,
tokenizer, presets and traces in ``fixtures/``; ``pyproject.toml`` (``[tool.setuptools.package-dir]``)
builds them into the wheel as ``pytest_disagg/suite`` and ``pytest_disagg/fixtures``, so that
``pytest --pyargs pytest_disagg.suite`` runs from any directory once installed. Every module that
reads shipped data asks here, so the two layouts are known in one place (``CLONE_PATHS`` mirrors
the package-dir table; tests/test_shipped.py checks that they agree).
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# name inside the installed package -> the repository path it is built from
CLONE_PATHS = {"suite": "tests/benchmarks", "fixtures": "fixtures"}


def shipped_dir(name: str) -> Path:
    """The installed copy if the package has one (a wheel), else the clone's directory (a checkout,
    editable or not)."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / CLONE_PATHS[name]


FIXTURES_DIR = shipped_dir("fixtures")
SUITE_DIR = shipped_dir("suite")
