"""README's option table is the one the options' tables write, and those tables are what pytest registers."""
from __future__ import annotations

import pytest

from pytest_disagg import optiondoc
from pytest_disagg.options import Option


def test_readme_option_table_is_the_generated_one():
    text = optiondoc.README.read_text()
    assert optiondoc.with_table(text, optiondoc.markdown_table(optiondoc.every_option())) == text, (
        "README's option table differs from the options' tables: run python -m pytest_disagg.optiondoc")


def test_every_disagg_option_pytest_knows_is_in_a_table(pytestconfig):
    registered = {name for name in vars(pytestconfig.option) if name.startswith("disagg_")}
    assert registered == {row.ini for row in optiondoc.every_option()}


def test_each_option_has_one_ini_twin_named_after_its_flag():
    rows = optiondoc.every_option()
    assert len({row.flag for row in rows}) == len(rows)
    for row in rows:
        assert row.ini == row.flag[2:].replace("-", "_")


def test_a_row_is_written_with_its_value_default_and_escaped_bars():
    rows = [Option("--disagg-x", "disagg_x", "a|b", "7", metavar="NAME|PATH"),
            Option("--disagg-y", "disagg_y", "on or off", switch=True)]
    lines = optiondoc.markdown_table(rows).splitlines()
    assert lines[2] == "| `--disagg-x=NAME\\|PATH` | `disagg_x` | `7` | a\\|b |"
    assert lines[3] == "| `--disagg-y` | `disagg_y` | off | on or off |"


def test_only_the_text_between_the_markers_changes():
    text = f"head\n{optiondoc.START}\nold\n{optiondoc.END}\ntail\n"
    assert optiondoc.with_table(text, "new") == f"head\n{optiondoc.START}\nnew\n{optiondoc.END}\ntail\n"


def test_a_readme_without_markers_is_an_error_naming_them():
    with pytest.raises(ValueError, match="option-table markers"):
        optiondoc.with_table("no table here", "new")


def test_check_reports_a_stale_table_and_writes_nothing(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"{optiondoc.START}\nstale\n{optiondoc.END}\n")
    assert optiondoc.main([str(readme), "--check"]) == 1
    assert "stale" in readme.read_text() and "option table differs" in capsys.readouterr().err
    assert optiondoc.main([str(readme)]) == 0 and optiondoc.main([str(readme), "--check"]) == 0
