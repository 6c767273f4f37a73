"""Installed, not cloned: the wheel carries the study (tests/benchmarks -> pytest_disagg.suite) and its
data (fixtures/ -> pytest_disagg.fixtures), and an installed package runs a benchmark from an empty
directory.

The wheel is built from a copy of only what pyproject.toml names (setuptools' build/ in the
checkout could otherwise carry stale files into it). The installed run uses a fresh venv whose heavy
dependencies (vLLM, torch) come from this environment through a ``.pth`` line that sorts after the
wheel's own copy; the wheel is installed before that line exists, so pip cannot see this
environment's pytest-disagg (the tox env's editable install of the checkout) and skip it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from pytest_disagg import shipped

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
BUILD_INPUTS = ("pyproject.toml", "README.md", "pytest_disagg", "tests/benchmarks", "fixtures")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}     # nothing of the checkout on the path


def test_the_clone_paths_are_pyprojects_package_dirs():
    mapped = {name.removeprefix("pytest_disagg."): path for name, path in PYPROJECT["package-dir"].items()}
    assert mapped == shipped.CLONE_PATHS
    assert shipped.FIXTURES_DIR == ROOT / "fixtures" and shipped.SUITE_DIR == ROOT / "tests" / "benchmarks"


def test_every_package_of_the_checkout_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pytest_disagg").rglob("__init__.py")}
    missing = found - set(PYPROJECT["packages"])
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {sorted(missing)}: the wheel would too"


def test_run_falls_back_to_the_checkouts_directory_where_the_suite_does_not_import(monkeypatch):
    from pytest_disagg import suite_cli

    monkeypatch.setattr(suite_cli.importlib.util, "find_spec", lambda name: None)
    assert suite_cli.suite_arguments() == [str(ROOT / "tests" / "benchmarks")]
    monkeypatch.setattr(suite_cli.importlib.util, "find_spec", lambda name: object())
    assert suite_cli.suite_arguments() == ["--pyargs", "pytest_disagg.suite"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("pytest_disagg-*.whl")
    print(f"wheel {whl.name}: {whl.stat().st_size} bytes")
    return whl


def test_the_wheel_holds_the_suite_fixtures_and_tokenizer(wheel):
    """Every file of the two directories: a new kind of fixture file that package-data misses fails here."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"pytest_disagg/{name}/{p.relative_to(ROOT / clone).as_posix()}"
                for name, clone in shipped.CLONE_PATHS.items() for p in files_under(ROOT / clone) if p.is_file()}
    assert {"pytest_disagg/suite/conftest.py", "pytest_disagg/fixtures/tokenizer/tokenizer.json",
            "pytest_disagg/fixtures/models/tiny-llama-cpu/config.json"} <= expected
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n], "the repository's tests leaked in"


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv with the wheel installed and this environment's site-packages after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz-host-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """The fresh venv's python, its pytest_disagg checked to be the wheel's."""
    root = tmp_path_factory.mktemp("venv")
    python = fresh_venv(root, wheel)
    where = subprocess.run([str(python), "-c", "import pytest_disagg; print(pytest_disagg.__file__)"],
                           cwd=root, env=ENV, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(root), f"pytest_disagg came from {where}, not the fresh venv"
    return python


def in_empty_dir(tmp_path: Path, cmd: list, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` run in a new empty directory: no conftest, no pytest config (the rootdir is that directory)."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [["-m", "pytest", "--pyargs", "pytest_disagg.suite"],
                                     ["-m", "pytest_disagg.cli", "run"]], ids=["pyargs", "pytest-disagg-run"])
def test_an_installed_wheel_collects_the_study_anywhere(venv, tmp_path, command):
    proc = in_empty_dir(tmp_path, [venv, *command, "--collect-only", "-q", "-p", "no:cacheprovider",
                                   "--disagg-mediums=colocated"], timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PytestAssertRewriteWarning" not in text, text[-4000:]
    modules = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert modules == {p.name for p in (ROOT / "tests" / "benchmarks").glob("test_*.py")}, proc.stdout


@pytest.mark.disagg
def test_an_installed_wheel_runs_a_benchmark_from_an_empty_directory(venv, tmp_path):
    pytest.importorskip("vllm")
    package = venv.parents[1] / "lib"
    before = files_under(package)
    out = tmp_path / "results.json"
    proc = in_empty_dir(tmp_path, [venv, "-m", "pytest", "--pyargs", "pytest_disagg.suite", "-m", "kv_reuse",
                                   "--disagg-mediums=colocated", "--disagg-prefix-caching=off", f"--disagg-json={out}",
                                   f"--disagg-logs={tmp_path / 'logs'}", "-p", "no:cacheprovider", "-q"], timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert (run["benchmark"], run["deployment"], run["n_failed"]) == ("kv-reuse", "colocated-pc0", 0) and run["n_ok"]
    assert files_under(package) == before, "the run wrote into the venv"
