"""README's option table, written from the options' own tables so the two cannot drift apart.

Every plugin module of the suite (``plugin.py`` and the modules it lists in ``pytest_plugins``)
keeps its options in an ``OPTIONS`` table of ``options.Option`` rows; this module reads them in that
order and writes them as one Markdown table between two marker comments of README.md.
``python -m pytest_disagg.optiondoc`` rewrites the table, ``--check`` only says whether it differs
(tests/test_optiondoc.py fails then).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import plugin
from .optionspec import Option

START = "<!-- options table: written by `python -m pytest_disagg.optiondoc`; do not edit by hand -->"
END = "<!-- end of options table -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def every_option() -> tuple[Option, ...]:
    """Every option of the suite's plugin modules, in the order pytest registers them."""
    modules = [plugin] + [importlib.import_module(name) for name in plugin.pytest_plugins]
    return tuple(row for module in modules for row in getattr(module, "OPTIONS", ()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _usage(row: Option) -> str:
    if row.switch:
        return f"`{row.flag}`"
    value = "{" + ",".join(row.choices) + "}" if row.choices else row.metavar
    return f"`{row.flag}={value}`" if value else f"`{row.flag}`"


def _default(row: Option) -> str:
    if row.switch:
        return "off"
    return f"`{row.default}`" if row.default else "–"


def markdown_table(rows) -> str:
    lines = ["| option | ini | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {_cell(_usage(r))} | `{r.ini}` | {_cell(_default(r))} | {_cell(r.help)} |" for r in rows]
    return "\n".join(lines)


def with_table(text: str, table: str) -> str:
    """``text`` with everything between the markers replaced by ``table``."""
    if START not in text or END not in text:
        raise ValueError(f"README has no option-table markers ({START!r} ... {END!r})")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("readme", nargs="?", type=Path, default=README)
    ap.add_argument("--check", action="store_true", help="exit 1 when the table differs; write nothing")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    new = with_table(text, markdown_table(every_option()))
    if new == text:
        return 0
    if args.check:
        print(f"{args.readme}: option table differs; run python -m pytest_disagg.optiondoc", file=sys.stderr)
        return 1
    args.readme.write_text(new)
    print(f"{args.readme}: option table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
