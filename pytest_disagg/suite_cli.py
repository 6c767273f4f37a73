"""``pytest-disagg run [PYTEST ARGS ...]``: the study shipped in the package, from any directory.

The same as ``pytest --pyargs pytest_disagg.suite [PYTEST ARGS ...]`` (the benchmarks are
``tests/benchmarks/`` in a clone, ``pytest_disagg/suite`` installed: ``shipped.py``), so an installed
package needs no checkout to run ``-m latency``. Every argument goes to pytest as given, ``--help``
included (pytest's help lists the ``--disagg-*`` options).
"""
from __future__ import annotations

import argparse

import pytest

SUITE = "pytest_disagg.suite"


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``run`` to a top-level ``add_subparsers()`` object; it takes no option of its own
    (prefix ``+``), so ``-m latency`` and ``--help`` reach pytest."""
    parser = subparsers.add_parser("run", prefix_chars="+", add_help=False,
                                   help=f"run the shipped benchmarks: pytest --pyargs {SUITE} [pytest args]")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest")
    return parser


def run(args) -> int:
    return int(pytest.main(["--pyargs", SUITE, *args.pytest_args]))
