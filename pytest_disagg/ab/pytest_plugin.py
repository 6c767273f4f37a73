"""pytest wiring of ``--disagg-ab*``: options (with ini twins), the side-B probe, the JSON section
and the terminal table. The plugin's ``disagg_bench`` asks ``ab_session(config)`` whether to hand
tests a ``runner.ABBench``, whose ``run`` runs rounds."""
from __future__ import annotations

import pytest

from ..baseline.pytest_plugin import machine_fingerprint
from ..options import OptionError
from ..optionspec import add_options, raw_values
from .options import OPTIONS, build_ab_options
from .probe import probe_interpreter, side_fingerprint
from .runner import ABSession
from .tables import ab_table

_AB_KEY = pytest.StashKey["ABSession | None"]()


def pytest_addoption(parser):
    add_options(parser, OPTIONS)


def raw_ab_options(config) -> dict:
    return raw_values(config, OPTIONS)


def pytest_configure(config):
    try:
        options = build_ab_options(raw_ab_options(config))
        probe = probe_interpreter(options.python) if options is not None and options.python else None
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_AB_KEY] = ABSession(options, probe) if options is not None else None


def ab_session(config) -> ABSession | None:
    session = config.stash.get(_AB_KEY, None)
    if session is not None and not session.fingerprints:
        machine = machine_fingerprint(config)
        session.fingerprints = {"A": side_fingerprint(machine, None), "B": side_fingerprint(machine, session.probe)}
    return session


@pytest.hookimpl(trylast=True)
def pytest_disagg_update_json(config, results):
    """The A/B set-up (both sides' interpreters and fingerprints, the looks) beside the options; the
    pairs themselves are in the ``ab`` section already (``SessionResults.add_ab_pair``)."""
    session = config.stash.get(_AB_KEY, None)
    if session is not None and session.pairs:
        results.setdefault("options", {})["ab"] = session.setup_json()


def pytest_terminal_summary(terminalreporter, config):
    session = config.stash.get(_AB_KEY, None)
    if session is None or not session.pairs:
        return
    terminalreporter.write_sep("-", "disagg: A/B (B/A per round, Hodges-Lehmann, 99 % signed-rank interval)")
    terminalreporter.write_line(ab_table(session.setup_json(), session.pairs))
