"""The shape of an option row and its registration with pytest, apart from the value rules of
``options.py``: every area's pytest wiring (deploy/, energy/, baseline/, load/, export/, ab/)
declares its ``OPTIONS`` table with these, and the areas sit below ``options`` (whose checks
import the launchers, mediums and models), so the row shape sits at the bottom with no imports.

Each ``Option`` has the same flag, ini twin, help and default in ``pytest --help``, in ini files
and in README's option table (``python -m pytest_disagg.optiondoc`` writes it). Adding an option
is one row.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One option and its ini twin: ``default`` is the ini's (the command line's is None, so the
    ini shows through); ``switch`` options take no value (store_true, a bool ini)."""
    flag: str
    ini: str
    help: str
    default: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False
    group: str = "disagg"


GROUPS = {"disagg": "disaggregated serving (pytest-disagg)", "disagg-ab": "A/B in one session (pytest-disagg)"}


def add_options(parser, table) -> None:
    """Each row of ``table`` as a command-line option in its ``--help`` group, with its ini twin."""
    for row in table:
        group = parser.getgroup(row.group, GROUPS[row.group])
        text = f"{row.help} [ini: {row.ini}]".replace("%", "%%")      # argparse %-formats option help
        if row.switch:
            group.addoption(row.flag, dest=row.ini, action="store_true", default=None, help=text)
            parser.addini(row.ini, row.help, type="bool", default=False)
        else:
            group.addoption(row.flag, dest=row.ini, default=None, metavar=row.metavar, choices=row.choices,
                            help=text)
            parser.addini(row.ini, row.help, default=row.default)


def option_value(config, ini: str):
    """The command line's value of the option whose ini twin is ``ini``, else the ini's."""
    value = config.getoption(ini)
    return config.getini(ini) if value is None else value


def raw_values(config, table) -> dict:
    """Option name without ``--disagg-`` -> the command line's value, else the ini's, else None."""
    return {row.flag[len("--disagg-"):].replace("-", "_"): option_value(config, row.ini) or None for row in table}


__all__ = ["GROUPS", "Option", "add_options", "option_value", "raw_values"]
