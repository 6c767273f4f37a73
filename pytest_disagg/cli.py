"""The ``pytest-disagg`` console script: one argparse parser, one subparser per area.

Each area contributes its command through ``register(subparsers)`` (which sets ``func`` on its
parsers) and, optionally, ``run(args)`` to map its own errors onto exit codes. Adding a command
(e.g. ``report``) is one line in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module with register(subparsers) and run(args)
COMMANDS = {
    "baselines": "pytest_disagg.baseline.cli",
    "report": "pytest_disagg.report.cli",
    "export": "pytest_disagg.export.cli",
    "run": "pytest_disagg.suite_cli",
    "compare": "pytest_disagg.compare",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-disagg",
                                     description="pytest-disagg: baselines and reports of disaggregated-serving benchmarks")
    subparsers = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(subparsers).set_defaults(_runner=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._runner)
    runner = getattr(module, "run", None)
    return int(runner(args) if runner else args.func(args))


if __name__ == "__main__":  # python -m pytest_disagg.cli
    sys.exit(main())
