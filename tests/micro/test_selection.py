"""How the micro-benchmarks are selected (this module is not one of them: it runs in the default
test run): ``tox -e test`` leaves them out and prints no benchmark table, ``pytest -m micro`` runs
all of them, and ``--benchmark-disable`` turns them into plain tests of the same code."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TABLE = re.compile(r"-+ benchmark[ :'].* tests? -+")


def child(*args: str) -> subprocess.CompletedProcess:
    """A child pytest over the micro-benchmark module alone."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(HERE / "test_micro_hot_paths.py"),
                           *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def micro_tests() -> list[str]:
    return sorted(re.findall(r"^def (test_\w+)", (HERE / "test_micro_hot_paths.py").read_text(), re.M))


@pytest.mark.parametrize("command", [0, 1], ids=["no-server", "real-deployments"])
def test_tox_test_run_leaves_the_micro_benchmarks_out_and_prints_no_table(command, tox_test_commands):
    args = tox_test_commands[command]
    expr = args[args.index("-m") + 1]
    assert "not micro" in expr
    proc = child("-m", expr)
    out = proc.stdout
    assert f"{len(micro_tests())} deselected" in out, out
    assert not TABLE.search(out), out


def test_pytest_m_micro_runs_every_benchmark_once_with_benchmark_disable():
    proc = child("-m", "micro", "--benchmark-disable", "-q", "-rA")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = sorted(set(re.findall(r"PASSED \S+::(test_\w+)", proc.stdout)))
    assert passed == micro_tests()
    assert not TABLE.search(proc.stdout)


def test_the_marker_is_registered():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--markers"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert "@pytest.mark.micro:" in proc.stdout


@pytest.mark.parametrize("name", ["test_micro_hot_paths.py"])
def test_every_micro_module_is_marked(name):
    assert "pytestmark = pytest.mark.micro" in (HERE / name).read_text()
