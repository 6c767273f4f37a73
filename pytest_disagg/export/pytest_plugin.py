"""``--disagg-benchmark-json=PATH`` (ini ``disagg_benchmark_json``): the session's results written
as pytest-benchmark JSON at the end of the run, as ``pytest-disagg export --format
pytest-benchmark`` would write them from the ``--disagg-json`` file.

The document is the session's results document exactly as ``--disagg-json`` writes it (taken
from ``pytest_disagg_update_json`` after every other plugin has changed it, or built the same way
when no ``--disagg-json`` was asked for). The checkout's git commit is added to the results
document (``git_commit``) so that exports made later from the file know it too.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ..baseline.document import git_commit
from ..optionspec import Option, add_options
from ..session import results_of
from . import ExportError, from_document
from .benchjson import document as benchmark_document   # not pytest_*: pluggy would take it for a hook
from .cli import write_json_atomic

OPTIONS = (
    Option("--disagg-benchmark-json", "disagg_benchmark_json", "also write the session's results as "
           "pytest-benchmark JSON here (pytest-benchmark compare, github-action-benchmark)", metavar="PATH"),
)
_DOCUMENT_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def benchmark_json_path(config: pytest.Config) -> Path | None:
    flag, ini = OPTIONS[0].flag, OPTIONS[0].ini
    raw = config.getoption(ini) or config.getini(ini)
    if not raw:
        return None
    path = Path(raw)
    if path.exists() and path.is_dir():
        raise pytest.UsageError(f"{flag}={raw}: is a directory; give a file name")
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


def pytest_configure(config: pytest.Config) -> None:
    benchmark_json_path(config)   # a bad value is a usage error at start, not at the end of the run


@pytest.hookimpl(trylast=True)
def pytest_disagg_update_json(config, results: dict) -> None:
    if results.get("git_commit") is None:
        results["git_commit"] = git_commit(config.rootpath)
    config.stash[_DOCUMENT_KEY] = results


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    path = benchmark_json_path(config)
    if path is None:
        return
    document = config.stash.get(_DOCUMENT_KEY, None)
    if document is None:
        results = results_of(config)
        if not results.runs:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"disagg: no pytest-benchmark JSON written to {path}: no benchmark run recorded")
            return
        document = results.to_json()
        config.hook.pytest_disagg_update_json(config=config, results=document)
    write(document, path, config)


def write(document: dict, path: Path, config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        doc, skipped = benchmark_document(from_document(document, "<this session>"),
                                          commit=document.get("git_commit"), commit_source="checkout")
    except ExportError as exc:
        if reporter is not None:
            reporter.write_line(f"disagg: no pytest-benchmark JSON written: {exc}")
        return
    write_json_atomic(path, doc)
    if reporter is not None:
        left = f" ({len(skipped)} figures left out: {skipped[0]} ...)" if skipped else ""
        reporter.write_line(f"disagg: {len(doc['benchmarks'])} pytest-benchmark entries written to {path}{left}")
