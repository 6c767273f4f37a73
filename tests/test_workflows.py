"""The CI workflows are valid GitHub Actions and run what README and the issue say they run."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_match_the_github_schema():
    assert WORKFLOWS, "no workflow files"
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _runs(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])


def test_nightly_gpu_runs_energy_and_latency_per_vllm_version_and_uploads():
    wf = yaml.safe_load((ROOT / ".github/workflows/nightly-gpu.yml").read_text())
    job = wf["jobs"]["gpu-regression"]
    assert "self-hosted" in job["runs-on"] and len(job["strategy"]["matrix"]["vllm"]) >= 2
    runs = _runs(wf)
    assert "pytest --disagg-gpus=0,1 -m energy" in runs
    assert "-m latency tests/benchmarks" in runs and "pytest-disagg report" in runs
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0].get("if") == "always()"


def test_cpu_workflow_runs_readme_test_command():
    wf = yaml.safe_load((ROOT / ".github/workflows/cpu.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    command = "pip install tox && tox -e test"
    assert command in _runs(wf) and command in readme
    assert "tox -e test" in (ROOT / ".ci/run").read_text()


def test_tox_test_splits_one_selection_in_two(tox_test_commands):
    """``tox -e test`` runs the tests without a server beside the real deployments, which run in one
    session: the two mark expressions must cover CI's selection once, no more, no less."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    assert ini["testenv:test"]["commands"].split() == ["bash", "scripts/tox_test.sh", "{envtmpdir}", "{posargs}"]
    first, second = tox_test_commands
    no_server, real = first[first.index("-m") + 1], second[second.index("-m") + 1]
    assert no_server.startswith("not disagg and ") and real.startswith("disagg and ")
    assert no_server.removeprefix("not disagg and ") == real.removeprefix("disagg and ")
    assert "-n" not in second           # one session owns the deployment pool
    assert "--disagg-weights=checkpoint" in second      # the equality property then starts no variant
    equality = [a for a in first if a.startswith("--disagg-equality-models")]
    assert equality and equality == [a for a in second if a.startswith("--disagg-equality-models")]


def test_ci_checks_the_import_layers_before_the_tests():
    wf = yaml.safe_load((ROOT / ".github/workflows/cpu.yml").read_text())
    steps = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    lint = next(i for i, run in enumerate(steps) if "tox -e lint" in run)
    assert lint < next(i for i, run in enumerate(steps) if "tox -e test" in run)
    ci = (ROOT / ".ci/run").read_text()
    assert "tox -e lint" in ci and ci.index("tox -e lint") < ci.index("tox -e test")
    assert "[testenv:lint]" in (ROOT / "tox.ini").read_text()


def test_nightly_gpu_publishes_the_report_and_the_trend_series():
    wf = yaml.safe_load((ROOT / ".github/workflows/nightly-gpu.yml").read_text())
    job = wf["jobs"]["gpu-regression"]
    runs = _runs(wf)
    assert wf["permissions"]["contents"] == "write"   # gh-pages push and the commit comment
    report = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")
              and "report-" in str(s["with"]["path"])]
    assert report and report[0].get("if") == "always()"
    trends = [s for s in job["steps"] if s.get("uses", "").startswith("benchmark-action/github-action-benchmark@")]
    tools = {"smaller": "customSmallerIsBetter", "bigger": "customBiggerIsBetter"}
    assert {s["with"]["output-file-path"].rsplit("/", 1)[-1] for s in trends} == {
        f"{kind}-{side}.json" for kind in ("latency", "energy") for side in tools}
    for step in trends:
        w = step["with"]
        name = w["output-file-path"].rsplit("/", 1)[-1]
        kind, side = name[:-len(".json")].split("-")
        # each metric in its own unit, the median the gate judges, in the direction the file holds
        assert w["tool"] == tools[side] and w["comment-on-alert"] is True
        assert w["alert-threshold"].endswith("%") and float(w["alert-threshold"][:-1]) > 100
        assert w["github-token"] == "${{ secrets.GITHUB_TOKEN }}"
        # the file the action reads is the one the export writes from that pytest run's results,
        # and the step runs after a failed gate too
        assert (f'pytest-disagg export "$DISAGG_OUT/{kind}.json" --format gab-{side} -o "$DISAGG_OUT/{name}"'
                in runs)
        assert f'--disagg-json="$DISAGG_OUT/{kind}.json"' in runs
        assert step["if"].startswith("always()") and name in step["if"]
        assert len({s["with"]["name"] for s in trends}) == len(trends)
    # pytest-benchmark JSON stays for its users
    assert all(f'--disagg-benchmark-json="$DISAGG_OUT/{kind}-benchmark.json"' in runs for kind in ("latency", "energy"))
    steps = [s.get("name") for s in job["steps"]]
    export = next(s for s in job["steps"] if "--format gab-smaller" in s.get("run", ""))
    assert export["if"] == "always()"
    assert steps.index("Latency load sweep") < steps.index(export["name"])
    assert all(steps.index(s["name"]) > steps.index(export["name"]) for s in trends)


def test_nightly_gpu_runs_the_ab_against_the_previous_vllm_with_graphs():
    """Issue 27: the nightly A/B of this vLLM (side B) against the previous release (side A, a second
    environment), on the GPU A/B workload; never eager (production mode is the GPU default)."""
    wf = yaml.safe_load((ROOT / ".github/workflows/nightly-gpu.yml").read_text())
    step = next(s for s in wf["jobs"]["gpu-regression"]["steps"] if s.get("name") == "A/B against the previous vLLM release")
    assert step["if"].startswith("always()") and "matrix.vllm == 'latest'" in step["if"]
    run = step["run"]
    assert "tests/benchmarks/test_ab_latency.py" in run and '--disagg-ab="$PWD/.venv/bin/python"' in run
    assert ". .venv-previous/bin/activate" in run and "--disagg-json=" in run
    assert "enforce-eager" not in _runs(wf) and "--disagg-eager=yes" not in _runs(wf)
