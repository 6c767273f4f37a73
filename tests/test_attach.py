"""Attach mode: a deployment managed elsewhere, driven and measured by the suite, which starts nothing.

Unit part: the attach file's checks (errors name the file and the key) and the DCGM-exporter
meter against a fake exporter on 127.0.0.1. Real part: the vLLM CPU server of this session's
colocated-pc0 deployment (started by this session's pool, so outside the child session and already
up for its other tests: no start of its own), attached by a child pytest with ``--disagg-attach``;
the child's results JSON must hold the run, measured against that server, with GPU energy from the
fake DCGM counter.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from pytest_disagg.attach import AttachError, attach, load_attach
from pytest_disagg.attach.dcgm import DcgmError, DcgmMeter

GOOD = '''
name = "ext-pd"
medium = "nixl-rdma"
url = "http://127.0.0.1:8000/v1"
model = "m"
[roles.prefill]
metrics = "http://127.0.0.1:8001/metrics"
gpus = [0]
[roles.decode]
metrics = "http://127.0.0.1:8002/metrics"
gpus = [1]
'''


def write(tmp_path, text):
    f = tmp_path / "attach.toml"
    f.write_text(text)
    return f


def test_good_file(tmp_path):
    c = load_attach(write(tmp_path, GOOD))
    assert (c.name, c.medium, c.url, c.model) == ("ext-pd", "nixl-rdma", "http://127.0.0.1:8000", "m")
    assert c.roles == (("prefill", "http://127.0.0.1:8001/metrics", (0,)), ("decode", "http://127.0.0.1:8002/metrics", (1,)))


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('url = "http://127.0.0.1:8000/v1"', ""), "'url'"),
    (lambda t: t.replace('"http://127.0.0.1:8000/v1"', '"ftp://x"'), "'url'"),
    (lambda t: t.replace('name = "ext-pd"', "name = 3"), "'name'"),
    (lambda t: t + "\ncolour = 1\n", "'roles.decode.colour'"),   # TOML: lands in roles.decode
    (lambda t: "speed = 1\n" + t, "'speed'"),
    (lambda t: t.replace("gpus = [1]", 'gpus = ["a"]'), "'roles.decode.gpus'"),
    (lambda t: t.replace("[roles.decode]", "[roles.router]"), "'roles.router'"),
    (lambda t: t.replace("8002/metrics", "notaport/metrics"), "'roles.decode.metrics'"),
    (lambda t: t.split("[roles.decode]")[0], "'roles'"),
    (lambda t: t.replace('name = "ext-pd"', 'name = "ext-pd'), "not valid TOML"),
    (lambda t: 'dcgm = 5\n' + t, "'dcgm'"),
])
def test_bad_file_names_file_and_key(tmp_path, edit, key):
    f = write(tmp_path, edit(GOOD))
    with pytest.raises(AttachError) as info:
        load_attach(f)
    assert str(f) in str(info.value) and key in str(info.value), str(info.value)


def test_model_asked_of_the_endpoint_and_unreachable_urls_named(tmp_path):
    text = GOOD.replace('model = "m"\n', "")
    assert load_attach(write(tmp_path, text), fetch_model=lambda url: "served").model == "served"

    def down(url):
        raise OSError("connection refused")
    with pytest.raises(AttachError, match="'model' is absent"):
        load_attach(write(tmp_path, text), fetch_model=down)
    port = _free_port()
    c = load_attach(write(tmp_path, GOOD.replace("8000", str(port))))
    with pytest.raises(AttachError, match=f"url: http://127.0.0.1:{port}/v1/models does not answer"):
        attach(c, timeout_s=2)


def _free_port():
    from pytest_disagg.deploy.server import free_port
    return free_port()


class FakeDcgm:
    """A DCGM-exporter stand-in on 127.0.0.1: each GPU's mJ counter grows by a fixed step per scrape."""

    def __init__(self, step_mj=(5000.0, 7000.0), hostname=None, metric="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
        self.values = [1e9, 2e9][: len(step_mj)]
        self.step = step_mj
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host = f',Hostname="{hostname}"' if hostname else ""
                lines = [f"# TYPE {metric} counter"]
                for g, v in enumerate(outer.values):
                    lines.append(f'{metric}{{gpu="{g}",UUID="GPU-{g}"{host}}} {v:.0f}')
                outer.values = [v + s for v, s in zip(outer.values, outer.step)]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_dcgm_window_is_the_counter_delta_in_joules():
    with FakeDcgm() as fake:
        meter = DcgmMeter([fake.url])
        with meter.window("run") as w:
            pass
    r = w.result
    assert dict(r.joules_by_gpu) == {0: 5.0, 1: 7.0} and r.method == "dcgm-counter" and r.reliable


def test_dcgm_two_exporters_number_gpus_apart():
    with FakeDcgm((1000.0,), hostname="a") as a, FakeDcgm((3000.0,), hostname="b") as b:
        meter = DcgmMeter([a.url, b.url])
        with meter.window("run") as w:
            pass
    assert dict(w.result.joules_by_gpu) == {0: 1.0, 1: 3.0}


def test_dcgm_without_the_field_is_a_clear_error():
    with FakeDcgm(metric="DCGM_FI_DEV_GPU_TEMP") as fake:
        with pytest.raises(DcgmError, match="no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
            DcgmMeter([fake.url]).gpus()


def test_bad_attach_file_is_a_usage_error(pytester, tmp_path):
    f = write(tmp_path, GOOD.replace('medium = "nixl-rdma"', ""))
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--disagg-attach={f}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--disagg-attach: {f}: key 'medium': missing*"])


INNER = '''
from pytest_disagg.load import WorkloadSpec
from pytest_disagg.load.arrivals import concurrency
from pytest_disagg.load.workload import fixed


def test_attached(disagg_deployment, disagg_bench):
    spec = WorkloadSpec(arrival=concurrency(2), num_requests=4, prompt=fixed(40), output=fixed(4))
    run, entry = disagg_bench.run(disagg_deployment, spec, benchmark="attach", load="c2")
    assert run.n_ok == 4
'''


@pytest.mark.disagg(mediums=["colocated"], prefix_caching=[False])
def test_attach_drives_an_externally_started_vllm(pytester, disagg_deployment, tmp_path):
    """The child session attaches to the vLLM server itself (not the pool's proxy): a server it
    did not start, which it must drive and measure without starting anything."""
    (server,) = disagg_deployment.servers
    url, model = server.url, disagg_deployment.model
    with FakeDcgm((2000.0,)) as fake:
        f = write(tmp_path, f'name = "ext-tiny"\nmedium = "external"\nurl = "{url}/v1"\ndcgm = "{fake.url}"\n'
                            f'vocab_size = {model.vocab_size}\n[roles.colocated]\nmetrics = "{url}/metrics"\n')
        pytester.makepyfile(test_inner=INNER)
        out = tmp_path / "results.json"
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        result = pytester.runpytest_subprocess(f"--disagg-attach={f}", f"--disagg-json={out}",
                                               "--disagg-baseline=off", "-p", "no:cacheprovider")
        assert result.ret == 0, result.stdout.str()[-4000:]
    doc = json.loads(out.read_text())
    run = [r for r in doc["runs"] if r["benchmark"] == "attach"][0]
    assert run["deployment"] == "ext-tiny" and run["medium"] == "external" and run["n_ok"] == 4
    assert doc["deployments"]["ext-tiny"]["attached"] is True
    # The server's own counters saw the measured requests (4 x 4 generated tokens).
    (metrics,) = [m for m in run["server_metrics"].values() if m["role"] == "colocated"]
    assert metrics["metrics_url"] == f"{url}/metrics" and metrics["key"]["generation_tokens"] >= 16, metrics
    # Energy from the fake DCGM counter: one step (2000 mJ) per scrape, one scrape before and after.
    assert run["energy"] and abs(run["energy"]["scalars"]["energy_gpu_j"] - 2.0) < 1e-9, run["energy"]
    # Nothing was started by the child session: the server it drove still runs, and no process of
    # this test is new but the server's own.
    assert psutil.pid_exists(server.pid) and psutil.Process(server.pid).status() != psutil.STATUS_ZOMBIE
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before | {
        p.pid for p in psutil.Process(server.pid).children(recursive=True)}
