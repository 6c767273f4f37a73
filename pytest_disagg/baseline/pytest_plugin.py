"""pytest wiring of the baseline gate: options, the ``disagg_baseline`` fixture, the summary. Thin.

Options (group ``disagg``, each with an ini twin):
  --disagg-baseline=off|warn|check|strict  (disagg_baseline)         default check
  --disagg-baselines-dir=DIR               (disagg_baselines_dir)    default baselines (from rootdir)
  --disagg-refresh-baselines               (disagg_refresh_baselines) rewrite baselines of tests that ran
  --disagg-tolerance=SPEC                  (disagg_tolerance)        e.g. 3% or latency=2%,throughput=10%
  --disagg-gate-confidence=C               (disagg_gate_confidence)  CI level of the gate, default 0.99

A test calls ``disagg_baseline.check(name, samples=..., scalars=..., config=..., workload=...)``;
a regression fails it with the gate's table. Every result is kept on the item
(``item.stash[CHECKS_KEY]``) and in ``item.user_properties`` as ``("disagg_baseline", {...})``, so
a results JSON (and xdist's controller) can carry the verdicts; the terminal summary lists
each compared benchmark's word (regressed, undecided, improved: only "same" is counted, not
listed), candidates and refreshed baselines.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import pytest

from .. import verdicts as words
from . import checker, fingerprint, settings as settings_mod
from .checker import CheckResult
from .document import git_commit
from .gate import Verdict, format_table
from ..metrics import default_tolerances
from .store import BaselineError, BaselineStore
from ..optionspec import Option, add_options, option_value

OPTIONS = (
    Option("--disagg-baseline", "disagg_baseline", "baseline gate: off, warn (report only), check (regressions "
           "fail; a missing baseline records a candidate) or strict (missing baselines fail too)",
           settings_mod.DEFAULT_MODE, metavar="{off,warn,check,strict}"),
    Option("--disagg-baselines-dir", "disagg_baselines_dir", "baselines directory, relative to the rootdir",
           "baselines", metavar="DIR"),
    Option("--disagg-tolerance", "disagg_tolerance", "tolerance of the gate: 3% for every metric, or by "
           "family/metric: latency=2%,throughput=10%,ttft_ms=1.5%", "", metavar="SPEC"),
    Option("--disagg-gate-confidence", "disagg_gate_confidence", "confidence level of the gate's bootstrap CI "
           "(default 0.99)", "", metavar="C"),
    Option("--disagg-refresh-baselines", "disagg_refresh_baselines", "rewrite the baselines of the tests that ran "
           "with this run's figures", switch=True),
)
USER_PROPERTY = "disagg_baseline"

SETTINGS_KEY = pytest.StashKey[settings_mod.Settings]()
MACHINE_KEY = pytest.StashKey[dict]()
COMMIT_KEY = pytest.StashKey["str | None"]()
CHECKS_KEY = pytest.StashKey[list]()          # on an item: its CheckResults


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    """Validate up front: a typo in an option is a usage error, not a failing fixture."""
    try:
        parsed = settings_mod.build(mode=option_value(config, "disagg_baseline"),
                                    directory=option_value(config, "disagg_baselines_dir"),
                                    refresh=option_value(config, "disagg_refresh_baselines"),
                                    tolerance=option_value(config, "disagg_tolerance"),
                                    confidence=option_value(config, "disagg_gate_confidence"))
    except settings_mod.SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    directory = parsed.directory if parsed.directory.is_absolute() else config.rootpath / parsed.directory
    config.stash[SETTINGS_KEY] = settings_mod.Settings(mode=parsed.mode, directory=directory, refresh=parsed.refresh,
                                                       tolerances=parsed.tolerances, confidence=parsed.confidence)
    config.pluginmanager.register(BaselineSummary(config), "disagg-baseline-summary")


def machine_fingerprint(config: pytest.Config) -> dict:
    """This session's machine fields, collected once, with the users' hook additions."""
    if MACHINE_KEY not in config.stash:
        fields = fingerprint.machine_info()
        hook = getattr(config.hook, "pytest_disagg_update_fingerprint", None)
        if hook is not None:
            hook(config=config, fingerprint=fields)
        try:
            config.stash[MACHINE_KEY] = fingerprint.with_extra({}, fields)
        except fingerprint.FingerprintError as exc:
            raise pytest.UsageError(f"pytest_disagg_update_fingerprint: {exc}") from None
    return config.stash[MACHINE_KEY]


def session_commit(config: pytest.Config) -> str | None:
    """The project's git commit, read once per session (None outside a git checkout)."""
    if COMMIT_KEY not in config.stash:
        config.stash[COMMIT_KEY] = git_commit(config.rootpath)
    return config.stash[COMMIT_KEY]


def benchmark_id(item: pytest.Item, name: str | None) -> str:
    """``<module>::<test name with params>[::<name>]``: stable across machines and checkouts."""
    module = Path(str(item.path)).stem if getattr(item, "path", None) else "tests"
    base = f"{module}::{item.name}"
    return base if not name or name == item.name else f"{base}::{name}"


class BaselineGate:
    """What a test touches: ``check(...)`` stores or compares one benchmark's figures."""

    def __init__(self, item: pytest.Item):
        self.item = item
        self.config = item.config
        self.settings: settings_mod.Settings = item.config.stash[SETTINGS_KEY]

    def check(self, name: str | None = None, samples: Mapping[str, list[float]] | None = None,
              scalars: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None,
              workload: Mapping[str, Any] | None = None, extra_fingerprint: Mapping[str, Any] | None = None,
              *, model: Any = None, directions: Mapping[str, str] | None = None,
              tolerances: Mapping[str, float] | None = None) -> CheckResult:
        """Gate one run. ``samples``: per-request values by metric (``RunResult.samples()``);
        ``scalars``: run-level figures (``RunResult.scalars()``); ``config``: the deployment
        config (hashed as the *medium* part of the subject — leave out fields that must not split
        baselines, e.g. an injected test delay); ``workload``: the workload spec; ``model``: the
        model config (hashed as the *model* part); ``extra_fingerprint``: machine fields to add for
        this check. Fails the test on a regression (and, in strict mode, on a missing baseline).
        :meth:`evaluate` + :meth:`enforce` for callers that record the result before it fails."""
        return self.enforce(self.evaluate(name, samples, scalars, config, workload, extra_fingerprint, model=model,
                                          directions=directions, tolerances=tolerances))

    def evaluate(self, name: str | None = None, samples: Mapping[str, list[float]] | None = None,
                 scalars: Mapping[str, float] | None = None, config: Mapping[str, Any] | None = None,
                 workload: Mapping[str, Any] | None = None, extra_fingerprint: Mapping[str, Any] | None = None,
                 *, model: Any = None, directions: Mapping[str, str] | None = None,
                 tolerances: Mapping[str, float] | None = None) -> CheckResult:
        """The check's result, recorded but never failing the test (bad figures still fail it:
        that is the caller's mistake, not a verdict)."""
        benchmark = benchmark_id(self.item, name)
        if self.settings.mode == "off":
            return self._record(CheckResult(benchmark=benchmark, status=checker.OFF, mode="off",
                                            message="baseline gate off"))
        try:
            fp = fingerprint.collect(model=model, medium=config, workload=workload, extra=extra_fingerprint,
                                     machine=machine_fingerprint(self.config))
            store = BaselineStore(self.settings.directory)
            result = checker.run_check(store, self.settings, benchmark=benchmark, fingerprint=fp,
                                       samples=samples, scalars=scalars, config=config, workload=workload,
                                       directions=directions, tolerances=tolerances,
                                       commit=session_commit(self.config))
        except BaselineError as exc:
            message = (f"{exc}\n(the file is left as it is; fix it, restore it from git, or rerun with "
                       f"--disagg-refresh-baselines)")
            return self._record(CheckResult(benchmark=benchmark, status="error", mode=self.settings.mode,
                                            message=message))
        except (ValueError, TypeError) as exc:  # bad figures from the test: say which check
            pytest.fail(f"disagg_baseline.check({benchmark!r}): {exc}", pytrace=False)
        return self._record(result)

    def enforce(self, result: CheckResult) -> CheckResult:
        """Fail the test (or warn, in warn mode) as the result's mode says; return it otherwise."""
        if result.status == "error":
            if self.settings.mode == "warn":
                warnings.warn(pytest.PytestWarning(result.message))
                return result
            pytest.fail(result.message, pytrace=False)
        if result.failed:
            pytest.fail(result.report(), pytrace=False)
        if self.settings.mode == "warn" and result.regressions:
            warnings.warn(pytest.PytestWarning(result.report()))
        return result

    def _record(self, result: CheckResult) -> CheckResult:
        self.item.stash.setdefault(CHECKS_KEY, []).append(result)
        self.item.user_properties.append((USER_PROPERTY, result.to_json()))
        return result


@pytest.fixture
def disagg_baseline(request: pytest.FixtureRequest) -> BaselineGate:
    """Gate this test's figures against ``baselines/``: ``disagg_baseline.check(name, samples=..., ...)``."""
    return BaselineGate(request.node)


def checks_of(item: pytest.Item) -> list[CheckResult]:
    """The baseline results a test recorded (for the results JSON)."""
    return list(item.stash.get(CHECKS_KEY, []))


class BaselineSummary:
    """Collects results from test reports (not items, so that xdist workers' results reach the
    controller) and prints them at the end of the session."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.seen: list[tuple[str, dict]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        self.seen.extend((report.nodeid, value) for key, value in report.user_properties if key == USER_PROPERTY)

    def _defaults(self) -> dict:
        machine = self.config.stash.get(MACHINE_KEY, None)   # set once a check ran in this process
        return default_tolerances(machine) if machine is not None else {}

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.seen:
            return
        tr = terminalreporter
        tr.section("disagg baselines")
        settings = self.config.stash[SETTINGS_KEY]
        tr.write_line(f"mode {settings.mode}, directory {_short(settings.directory)}, "
                      f"tolerances {settings_mod.describe_tolerances(settings.tolerances, self._defaults())}, "
                      f"confidence {settings.confidence:g}")
        same = 0
        for status in ("error", "compared", "refreshed", "mismatch", "candidate"):
            for _nodeid, data in self.seen:
                if data["status"] != status:
                    continue
                verdicts = [Verdict.from_json(v) for v in data["verdicts"] if v.get("metric") != "*"]
                word = words.normalize(data["word"]) if data.get("word") not in (None, "-") else words.NOT_COMPARED
                if status == "compared" and word == words.SAME:
                    same += 1
                    continue
                if status == "compared":
                    called = [v for v in verdicts if v.verdict in (words.REGRESSED, words.IMPROVED)]
                    open_ = sorted(v.metric for v in verdicts if v.verdict == words.UNDECIDED)
                    tr.write_line(f"{word}: {data['message']}"
                                  + (f" (undecided: {', '.join(open_)})" if open_ else ""))
                    if called:
                        tr.write_line(format_table(called))
                else:
                    tr.write_line(f"{status}: {data['message']}")
        if same:
            tr.write_line(f"{same} benchmark(s) the same as their baselines (every metric's interval inside "
                          f"its tolerance)")


def _short(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


__all__ = ["BaselineGate", "BaselineSummary", "CHECKS_KEY", "MACHINE_KEY", "SETTINGS_KEY", "USER_PROPERTY", "benchmark_id",
           "checks_of", "disagg_baseline", "machine_fingerprint"]
