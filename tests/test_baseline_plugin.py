"""The baseline pytest plugin in a child pytest: options, candidate → refresh → compare, a slowed
run failing with the table, strict mode, the fingerprint hook and the verdicts on the report."""
from __future__ import annotations

import json

import numpy  # noqa: F401  imported here so the child runs reuse it (pytester restores sys.modules)
import pytest

import pytest_disagg.baseline.pytest_plugin  # noqa: F401  (same reason)

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "pytest_disagg.baseline.pytest_plugin", "-p", "no:cacheprovider")

BENCH = """
import os
import numpy as np

def test_latency(disagg_baseline):
    slow = float(os.environ.get("SLOW", "1"))
    seed = int(os.environ.get("SEED", "0"))
    rng = np.random.default_rng(seed)
    result = disagg_baseline.check(
        "poisson",
        samples={"ttft_ms": (rng.lognormal(3.0, 0.1, 200) * slow).tolist()},
        scalars={"output_throughput": 50.0 / slow},
        config={"medium": "colocated", "prefix_caching": False},
        workload={"requests": 200, "rate": 4.0},
    )
    print("STATUS", result.status)
"""


def run(pytester, monkeypatch, *args, slow=1.0, seed=0):
    monkeypatch.setenv("SLOW", str(slow))
    monkeypatch.setenv("SEED", str(seed))
    return pytester.runpytest(*PLUGIN, "-s", *args)


def baseline_files(pytester, candidates=False):
    root = pytester.path / "baselines"
    files = sorted(p for p in root.rglob("*.json") if (".candidates" in p.parts) == candidates)
    return files


def test_options_and_ini_twins_are_in_the_disagg_group(pytester):
    out = pytester.runpytest(*PLUGIN, "--help").stdout.str()
    for opt in ("--disagg-baseline=", "--disagg-baselines-dir=", "--disagg-refresh-baselines",
                "--disagg-tolerance=", "--disagg-gate-confidence="):
        assert opt in out
    for ini in ("disagg_baseline ", "disagg_baselines_dir", "disagg_refresh_baselines", "disagg_tolerance",
                "disagg_gate_confidence"):
        assert ini in out


@pytest.mark.parametrize("args, ini, message", [
    (("--disagg-baseline=loud",), "", "--disagg-baseline='loud': allowed values are off, warn, check, strict"),
    (("--disagg-tolerance=five",), "", "--disagg-tolerance (*)='five': not a number"),
    ((), "disagg_tolerance = latency=150%", "must be at least 0 and below 100 %"),
])
def test_bad_values_are_usage_errors(pytester, args, ini, message):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*PLUGIN, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_candidate_then_refresh_then_pass_then_slowed_run_fails_with_the_table(pytester, monkeypatch):
    pytester.makepyfile(test_bench=BENCH)
    first = run(pytester, monkeypatch)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*STATUS candidate", "*disagg baselines*", "candidate: no baseline for *"])
    assert not baseline_files(pytester) and len(baseline_files(pytester, candidates=True)) == 1

    run(pytester, monkeypatch, "--disagg-refresh-baselines").assert_outcomes(passed=1)
    (path,) = baseline_files(pytester)
    assert path.name == "test_bench.test_latency.poisson.json"
    stored = json.loads(path.read_text())
    assert stored["benchmark"] == "test_bench::test_latency::poisson" and stored["metrics"]["ttft_ms"]["n"] == 200

    same = run(pytester, monkeypatch, seed=1)
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["*STATUS compared", "1 benchmark(s) the same as their baselines*"])

    slowed = run(pytester, monkeypatch, slow=1.4, seed=2)
    slowed.assert_outcomes(failed=1)
    slowed.stdout.fnmatch_lines(["*2 metric(s) regressed against*",
                                 "*metric*baseline*now*change*CI*verdict*",
                                 "*ttft_ms*+4?.?*regressed*", "*output_throughput*no-ci*regressed*"])
    assert json.loads(path.read_text()) == stored                     # a failing run never rewrites

    warned = run(pytester, monkeypatch, "--disagg-baseline=warn", slow=1.4, seed=2)
    warned.assert_outcomes(passed=1)   # other warnings (e.g. pytest's assert-rewrite notice) may come too
    warned.stdout.fnmatch_lines(["*PytestWarning*regressed against*"])
    warned.stdout.fnmatch_lines(["*disagg baselines*", "regressed: *regressed*"])

    faster = run(pytester, monkeypatch, slow=0.6, seed=3)
    faster.assert_outcomes(passed=1)
    faster.stdout.fnmatch_lines(["improved: *improved beyond tolerance*", "*ttft_ms*improved*"])

    run(pytester, monkeypatch, "--disagg-baseline=off", slow=3.0).assert_outcomes(passed=1)


def test_strict_mode_fails_without_a_baseline(pytester, monkeypatch):
    pytester.makepyfile(test_bench=BENCH)
    result = run(pytester, monkeypatch, "--disagg-baseline=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no baseline for 'test_bench::test_latency::poisson'*candidate recorded*"])


def test_a_corrupt_baseline_fails_naming_the_file_and_is_kept(pytester, monkeypatch):
    pytester.makepyfile(test_bench=BENCH)
    run(pytester, monkeypatch, "--disagg-refresh-baselines").assert_outcomes(passed=1)
    (path,) = baseline_files(pytester)
    path.write_text(path.read_text()[:300])
    result = run(pytester, monkeypatch)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{path.name}: not valid JSON*", "*the file is left as it is*"])
    assert len(path.read_text()) == 300


def test_verdicts_reach_the_report_and_the_hook_adds_fingerprint_fields(pytester, monkeypatch):
    pytester.makeconftest("""
        import pytest

        @pytest.hookimpl
        def pytest_disagg_update_fingerprint(config, fingerprint):
            fingerprint["rack"] = "r7"
    """)
    pytester.makepyfile(test_bench=BENCH)
    run(pytester, monkeypatch, "--disagg-refresh-baselines").assert_outcomes(passed=1)
    (path,) = baseline_files(pytester)
    assert json.loads(path.read_text())["fingerprint"]["machine"]["rack"] == "r7"
    monkeypatch.setenv("SEED", "1")
    reprec = pytester.inline_run(*PLUGIN)
    (report,) = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    (entry,) = [value for key, value in report.user_properties if key == "disagg_baseline"]
    assert entry["status"] == "compared" and entry["word"] in ("same", "undecided")
    assert {v["metric"] for v in entry["verdicts"]} == {"ttft_ms", "output_throughput"}
