"""Test-only mediums (pytest_disagg.testing.faults): their proxy flags, their names, and that they
keep the production config and the baseline subject hash of ordinary deployments as they were."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from pytest_disagg.baseline.fingerprint import stable_hash
from pytest_disagg.bench import subject_config
from pytest_disagg.deploy.pool import DeploymentConfig, proxy_command
from pytest_disagg.deploy.proxy import build
from pytest_disagg.deploy.server import ServerHandle
from pytest_disagg.mediums import MediumContext, MediumRegistry
from pytest_disagg.testing import faults


def _handle(role: str, port: int) -> ServerHandle:
    return ServerHandle(role=role, url=f"http://127.0.0.1:{port}", pid=0, device="cpu", gpu_indices=(),
                        log_path="", cmdline=())


def _cmd(registry, config: DeploymentConfig, tmp_path) -> list[str]:
    medium = registry.get(config.medium)
    ctx = MediumContext(workdir=tmp_path, device="cpu", side_channel_port=0, peer_ports={},
                        services={"redis": "127.0.0.1:6390"})
    handles = [_handle(role, 8100 + i) for i, role in enumerate(medium.roles())]
    return proxy_command(medium, config, handles, 8000, {}, ctx)


def _subject_hash(registry, config: DeploymentConfig) -> str:
    deployment = SimpleNamespace(config=config, medium=registry.get(config.medium), dtype="float32")
    return stable_hash(subject_config(deployment))


def test_the_production_config_has_no_test_only_fields():
    names = {f.name for f in dataclasses.fields(DeploymentConfig)}
    assert not names & {"proxy_fault", "proxy_extra_delay_ms"}


def test_the_fault_medium_adds_its_proxy_flag_and_the_proxy_takes_it(tmp_path):
    registry = MediumRegistry()
    base = DeploymentConfig(medium="nixl-cpu")
    config = faults.faulty_config(registry, base, "swap-kv-params")
    assert config.medium == "nixl-cpu+swap-kv-params" and config.key() == "nixl-cpu+swap-kv-params-pc0"
    cmd = _cmd(registry, config, tmp_path)
    assert cmd == _cmd(registry, base, tmp_path) + ["--fault", "swap-kv-params"]
    proxy, _ = build(cmd[cmd.index("--mode"):])
    assert proxy.fault == "swap-kv-params" and proxy.mode == "kv_params"


def test_the_delayed_medium_keeps_its_base_proxy_args_and_adds_the_delay(tmp_path):
    registry = MediumRegistry()
    base = DeploymentConfig(medium="lmcache-cpu", device="cuda")       # a medium with proxy_args of its own
    config = faults.delayed_config(registry, base, 12.5)
    assert config.medium == "lmcache-cpu+delay12.5ms"
    cmd = _cmd(registry, config, tmp_path)
    assert "--store-barrier" in cmd and cmd == _cmd(registry, base, tmp_path) + ["--extra-delay-ms", "12.5"]
    proxy, _ = build(cmd[cmd.index("--mode"):])
    assert proxy.extra_delay_s == 0.0125


def test_registering_the_same_test_medium_twice_keeps_one():
    registry = MediumRegistry()
    a = faults.delayed_config(registry, DeploymentConfig(medium="colocated"), 5)
    b = faults.delayed_config(registry, DeploymentConfig(medium="colocated", variant="x"), 5.0)
    assert a.medium == b.medium == "colocated+delay5ms"
    assert registry.names().count("colocated+delay5ms") == 1


def test_bad_test_mediums_are_refused():
    registry = MediumRegistry()
    with pytest.raises(ValueError, match="unknown fault 'melt'; known: swap-kv-params"):
        faults.faulty(registry.get("nixl-cpu"), "melt")
    with pytest.raises(ValueError, match="breaks a kv_params hand-off; medium 'disk' has 'storage'"):
        faults.faulty(registry.get("disk"))
    with pytest.raises(ValueError, match="one of them > 0"):
        faults.delayed(registry.get("colocated"), 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        faults.delayed(registry.get("colocated"), 5, -1)


def test_a_token_delay_is_a_medium_of_its_own_with_its_proxy_flag():
    registry = MediumRegistry()
    both = faults.delayed(registry.get("colocated"), 5, 0.4)
    assert both.name == "colocated+delay5ms+tpot0.4ms"
    args = both.proxy_args(None)
    assert args[args.index("--extra-token-delay-ms") + 1] == "0.4" and "--extra-delay-ms" in args
    assert faults.delayed(registry.get("colocated"), token_delay_ms=0.4).name == "colocated+tpot0.4ms"
    stream = faults.delayed(registry.get("colocated"), stream_delay_ms=37, token_delay_ms=0.3)
    assert stream.name == "colocated+stream37ms+tpot0.3ms"
    assert stream.proxy_args(None) == ["--extra-stream-delay-ms", "37.0", "--extra-token-delay-ms", "0.3"]


def test_a_delayed_or_faulty_medium_has_a_subject_hash_of_its_own():
    registry = MediumRegistry()
    base = DeploymentConfig(medium="nixl-cpu", block_size=32)
    slowed = faults.delayed_config(registry, dataclasses.replace(base, variant="slow5pct"), 3.0)
    broken = faults.faulty_config(registry, base)
    hashes = {_subject_hash(registry, c) for c in (base, slowed, broken)}
    assert len(hashes) == 3


# Computed on main at 5ef9c56, before the test-only fields left DeploymentConfig: the baselines in
# baselines/ are keyed by these hashes, so an ordinary deployment's must not move.
PINNED = [
    (dict(medium="colocated", block_size=32), "369d2d826d36"),
    (dict(medium="nixl-cpu", block_size=32, prefix_caching=True), "590038d427f7"),
    # every GPU baseline before CUDA graphs was served eager: eager keeps that hash
    (dict(medium="lmcache-nixl", device="cuda", gpus=(0, 1), model="tiny-llama-gpu", eager=True), "1274a198d9ee"),
]


@pytest.mark.parametrize("fields, expected", PINNED, ids=[f["medium"] for f, _ in PINNED])
def test_an_ordinary_configs_subject_hash_is_unchanged(fields, expected):
    assert _subject_hash(MediumRegistry(), DeploymentConfig(**fields)) == expected



def test_cuda_graphs_serving_is_a_subject_of_its_own():
    """The GPU default (vLLM's CUDA graphs) must never be gated against an eager baseline."""
    fields = dict(medium="lmcache-nixl", device="cuda", gpus=(0, 1), model="tiny-llama-gpu")
    graphs = _subject_hash(MediumRegistry(), DeploymentConfig(**fields))
    assert graphs != _subject_hash(MediumRegistry(), DeploymentConfig(**fields, eager=True))
    assert graphs == _subject_hash(MediumRegistry(), DeploymentConfig(**fields, eager=False))
    assert DeploymentConfig(**fields).serving_mode() == "cuda-graphs"
    assert DeploymentConfig(medium="colocated").serving_mode() == "eager"


def test_real_weights_split_the_baseline_subject_and_dummy_keeps_the_old_hash():
    """``--disagg-weights=checkpoint`` measures other weights: its own baselines; the default adds nothing."""
    registry = MediumRegistry()
    dummy = DeploymentConfig(medium="nixl-cpu")
    assert "weights" not in subject_config(SimpleNamespace(config=dummy, medium=registry.get("nixl-cpu"),
                                                           dtype="float32"))
    real = dataclasses.replace(dummy, weights="checkpoint")
    assert _subject_hash(registry, real) != _subject_hash(registry, dummy)
