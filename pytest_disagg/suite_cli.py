"""``pytest-disagg run [PYTEST ARGS ...]``: the study shipped in the package, from any directory.

The same as ``pytest --pyargs pytest_disagg.suite [PYTEST ARGS ...]`` (the benchmarks are
``tests/benchmarks/`` in a clone, ``pytest_disagg/suite`` installed: ``shipped.py``), so an installed
package needs no checkout to run ``-m latency``. Every argument goes to pytest as given, ``--help``
included (pytest's help lists the ``--disagg-*`` options). pytest replaces this process (exec) rather
than running in it: the plugin is then imported by pytest first (its asserts rewritten), and Ctrl-C
and SIGTERM reach the session that tears the deployments down, with no wrapper in between.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from .shipped import SUITE_DIR

SUITE = "pytest_disagg.suite"


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``run`` to a top-level ``add_subparsers()`` object; it takes no option of its own
    (prefix ``+``), so ``-m latency`` and ``--help`` reach pytest."""
    parser = subparsers.add_parser("run", prefix_chars="+", add_help=False,
                                   help=f"run the shipped benchmarks: pytest --pyargs {SUITE} [pytest args]")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest")
    return parser


def suite_arguments() -> list[str]:
    """``--pyargs pytest_disagg.suite`` where it imports (a wheel, or an install of the checkout made
    since the mapping exists); else the checkout's directory (the package from PYTHONPATH or an older
    install), whose pytest config then makes the checkout the rootdir, as for ``pytest tests/benchmarks``."""
    return ["--pyargs", SUITE] if importlib.util.find_spec(SUITE) else [str(SUITE_DIR)]


def run(args) -> int:
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *suite_arguments(), *args.pytest_args])
