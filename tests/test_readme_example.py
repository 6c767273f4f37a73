"""README's "your own benchmark" example is docs/examples/test_my_benchmark.py, word for word, and
it runs: a child pytest drives it on a fake OpenAI server attached with ``--disagg-attach`` (no vLLM;
the same test on real deployments is what the shipped suite's benchmarks do)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "test_my_benchmark.py"


def test_readme_shows_the_example_verbatim():
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```\n" in readme, f"README's example differs from {EXAMPLE}"


@pytest.fixture
def fake_server_url():
    """A fake OpenAI-compatible server in a process of its own (the child pytest's client needs a
    loop that is not the server's)."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest_disagg.testing.fakeserver", "--itl-ms", "2",
                             "--ttft-ms", "5"], stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        yield re.search(r"listening on (\S+)", proc.stdout.readline()).group(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_the_example_runs_on_an_attached_deployment(pytester, fake_server_url, tmp_path):
    attach = tmp_path / "attach.toml"
    attach.write_text(f'name = "fake"\nmedium = "external"\nurl = "{fake_server_url}/v1"\nmodel = "fake-model"\n'
                      f'[roles.colocated]\nmetrics = "{fake_server_url}/metrics"\n')
    pytester.makepyfile(test_mine=EXAMPLE.read_text())
    out = tmp_path / "results.json"
    result = pytester.runpytest_subprocess("-m", "latency", f"--disagg-attach={attach}", f"--disagg-json={out}",
                                           "--disagg-baseline=off", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert (run["benchmark"], run["deployment"], run["n_ok"]) == ("short-chat", "fake", 16)
