"""The launcher seam: option validation, the registry, and the local launcher (today's path)."""
from __future__ import annotations

import sys

import pytest

from pytest_disagg.children import processes
from pytest_disagg.deploy.launchers import LAUNCHERS, LocalLauncher, make_launcher
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.options import OptionError, build_options


def opts(**raw):
    return build_options(raw, MediumRegistry(), 0)


def test_default_launcher_is_local():
    o = opts()
    assert (o.launcher, o.ray_address, o.attach) == ("local", "auto", None)


@pytest.mark.parametrize("raw, words", [
    ({"launcher": "slurm"}, ["--disagg-launcher='slurm'", "local, ray"]),
    ({"launcher": "ray", "ray_address": "nohost"}, ["--disagg-ray-address='nohost'", "HOST:PORT"]),
    ({"launcher": "ray", "ray_address": "h:99999"}, ["--disagg-ray-address"]),
    ({"ray_address": "127.0.0.1:6379"}, ["needs --disagg-launcher=ray"]),
    ({"attach": "/nonexistent/attach.toml"}, ["--disagg-attach", "no such file"]),
])
def test_bad_launcher_values_name_the_option(raw, words):
    with pytest.raises(OptionError) as info:
        opts(**raw)
    for w in words:
        assert w in str(info.value)


def test_ray_address_accepted():
    assert opts(launcher="ray", ray_address="127.0.0.1:6379").ray_address == "127.0.0.1:6379"


def test_attach_refuses_a_launcher(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text("")
    with pytest.raises(OptionError, match="starts nothing"):
        opts(attach=str(f), launcher="ray")


def test_registry_names_and_unknown():
    assert set(LAUNCHERS) == {"local", "ray"}
    assert isinstance(make_launcher("local"), LocalLauncher)
    with pytest.raises(ValueError, match="unknown launcher 'k8s'; known: local, ray"):
        make_launcher("k8s")


def test_local_launcher_runs_under_the_supervisor(tmp_path):
    start = LocalLauncher().for_deployment(["prefill", "decode"])
    child = start(1, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], env={"PATH": "/usr/bin"},
                  log_path=tmp_path / "s.log", ports=())
    try:
        assert isinstance(child, processes.Child) and child.alive()
        assert child in processes.live_children()
    finally:
        processes.stop(child)
    assert not child.alive() and child not in processes.live_children()


def test_usage_error_through_pytest(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--disagg-launcher=nomad")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--disagg-launcher='nomad': allowed values are local, ray*"])


def test_ray_env_and_host_helpers():
    ray_mod = pytest.importorskip("pytest_disagg.deploy.launchers.ray", reason="ray is not installed")
    cmd = ["python", "-m", "vllm", "--host", "127.0.0.1", "--port", "8000"]
    assert ray_mod.with_host(cmd, "10.1.2.3")[4] == "10.1.2.3" and cmd[4] == "127.0.0.1"
    import os
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", UCX_TLS="tcp")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    set_, unset = ray_mod.env_for_node(env)
    assert set_["VLLM_CPU_KVCACHE_SPACE"] == "1" and set_["UCX_TLS"] == "tcp"
    assert "PATH" not in set_ or set_["PATH"] != os.environ.get("PATH")


def test_fingerprint_records_a_non_local_launcher(pytester):
    """--disagg-launcher=ray adds 'launcher' to the machine fields; local adds nothing (old hashes hold)."""
    pytester.makepyfile('''
        from pytest_disagg.baseline.pytest_plugin import machine_fingerprint

        def test_fp(pytestconfig):
            fp = machine_fingerprint(pytestconfig)
            print("LAUNCHER=" + str(fp.get("launcher")))
    ''')
    for flag, want in (("--disagg-launcher=local", "LAUNCHER=None"), ("--disagg-launcher=ray", "LAUNCHER=ray")):
        result = pytester.runpytest(flag, "-s", "-p", "no:cacheprovider")
        assert result.ret == 0
        result.stdout.fnmatch_lines([f"*{want}*"])


def test_the_option_accepts_exactly_the_registry(monkeypatch):
    """--disagg-launcher is checked against deploy/launchers' LAUNCHERS: a launcher added there is
    accepted, with no second list to keep in step."""
    from pytest_disagg.options import OptionError, parse_launcher

    with pytest.raises(OptionError, match="allowed values are local, ray"):
        parse_launcher("pigeon")
    monkeypatch.setitem(LAUNCHERS, "pigeon", lambda **_: LocalLauncher())
    assert parse_launcher("pigeon") == "pigeon"


def test_servers_keep_vllms_own_sockets_on_loopback_unless_told(tmp_path, monkeypatch):
    """vLLM binds its engine-worker queue to the host's routed address by default (get_ip)."""
    from pytest_disagg.deploy.server import ServerSpec

    spec = ServerSpec(role="colocated", model_dir=tmp_path, served_name="m", device="cpu", dtype="float32",
                      max_model_len=128, prefix_caching=False)
    monkeypatch.delenv("VLLM_HOST_IP", raising=False)
    monkeypatch.delenv("UCX_NET_DEVICES", raising=False)
    env = spec.environment()
    assert env["VLLM_HOST_IP"] == "127.0.0.1"
    assert env["UCX_NET_DEVICES"] == "lo"          # NIXL's UCX listener (it took the host's address)
    monkeypatch.setenv("UCX_NET_DEVICES", "mlx5_0:1")
    assert spec.environment()["UCX_NET_DEVICES"] == "mlx5_0:1"
    monkeypatch.delenv("UCX_NET_DEVICES")
    monkeypatch.setenv("VLLM_HOST_IP", "10.1.2.3")
    env = spec.environment()
    assert env["VLLM_HOST_IP"] == "10.1.2.3" and "UCX_NET_DEVICES" not in env
