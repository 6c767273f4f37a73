"""Energy of a deployment on several nodes (energy/nodes.py), without Ray: per-node samplers on the
fake NVML in this process, their windows merged into one record, GPUs attributed to prefill and
decode by node even where their NVML indices repeat, and errors that name the node."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from fake_nvml import FAKE_DRIVER, FakeClock, FakeGpu, FakeNvml, FakeNvmlWithDriver
from pytest_disagg.energy.attribution import attribute
from pytest_disagg.energy.nodes import (DeploymentMeter, NodeEnergy, NodeSampler, NodeSamplerError,
                                        load_nvml_source, merge_windows, node_fingerprint, placement)
from pytest_disagg.energy.results import EnergyWindow

QUANTUM_J = 400 * 0.1     # one counter update of the hungriest fake GPU: the most a boundary is off by


class InProcessSamplers:
    """The SamplerBackend face over NodeSamplers in this process; ``kill(node)`` plays a dead actor."""

    def __init__(self, fakes: dict[str, FakeNvml], clock: FakeClock):
        self.fakes, self.clock = fakes, clock
        self.samplers: dict[str, NodeSampler] = {}
        self.started: list[str] = []
        self.dead: set[str] = set()

    def ensure(self, nodes):
        for node in nodes:
            if node not in self.samplers:
                self.started.append(node)
                # align_boundaries off: every node here runs on one fake clock and is called in turn, so
                # one node's wait for its counter update would move the others' time (Ray calls the nodes
                # at once, each waiting on its own clock); aligned boundaries: test_energy_meter.py
                self.samplers[node] = NodeSampler(None, nvml=self.fakes[node], sample_interval_s=None,
                                                  clock=self.clock, sleep=self.clock.sleep, wall_clock=lambda: 1.7e9,
                                                  align_boundaries=False)

    def call(self, nodes, method, *args):
        out = {}
        for node in nodes:
            if node in self.dead:
                raise NodeSamplerError(node, f"{method} failed: its actor died")
            out[node] = getattr(self.samplers[node], method)(*args)
        return out

    def kill(self, node):
        self.dead.add(node)
        self.samplers.pop(node).stop()

    def close(self):
        for node in list(self.samplers):
            self.samplers.pop(node).stop()


def server(role, node, *gpus):
    return SimpleNamespace(role=role, node=node, gpu_indices=tuple(gpus))


@pytest.fixture
def cluster():
    clock = FakeClock()
    fakes = {"node-a": FakeNvmlWithDriver([FakeGpu(power_w=100.0), FakeGpu(power_w=200.0)], clock=clock),
             "node-b": FakeNvmlWithDriver([FakeGpu(power_w=300.0, name="Fake B200"), FakeGpu(power_w=400.0)],
                                          clock=clock)}
    backend = InProcessSamplers(fakes, clock)
    yield SimpleNamespace(clock=clock, fakes=fakes, backend=backend, energy=NodeEnergy(backend))
    backend.close()


def test_gpu_zero_of_two_nodes_is_two_gpus_attributed_by_node(cluster):
    deployment = SimpleNamespace(servers=(server("prefill", "node-a", 0), server("decode", "node-b", 0)))
    meter = cluster.energy.for_deployment(deployment)
    roles = meter.gpus_by_role()
    assert roles == {"prefill": (0,), "decode": (1,)}          # keys, not the repeated NVML index 0
    with meter.window("run") as handle:
        cluster.clock.advance(10.0)
    window = handle.result
    assert dict(window.gpu_nodes) == {0: {"node": "node-a", "index": 0}, 1: {"node": "node-b", "index": 0}}
    assert window.joules_by_gpu[0] == pytest.approx(1000.0, abs=QUANTUM_J)
    assert window.joules_by_gpu[1] == pytest.approx(3000.0, abs=QUANTUM_J)
    assert window.seconds == pytest.approx(10.0) and window.method == "counter" and window.reliable
    record = attribute(window, prefill_gpus=roles["prefill"], decode_gpus=roles["decode"],
                       prompt_tokens=100, output_tokens=50, requests=5).record()
    assert not record["shared"]
    stages = {s["role"]: s for s in record["stages"]}
    assert stages["prefill"]["joules"] == pytest.approx(1000.0, abs=QUANTUM_J)
    assert stages["decode"]["joules"] == pytest.approx(3000.0, abs=QUANTUM_J)
    assert record["gpu_nodes"] == {"0": {"node": "node-a", "index": 0}, "1": {"node": "node-b", "index": 0}}
    assert EnergyWindow.from_json(window.to_json()) == window


def test_colocated_on_one_node_is_shared_and_other_gpus_stay_out(cluster):
    deployment = SimpleNamespace(servers=(server("colocated", "node-b", 1),))
    meter = cluster.energy.for_deployment(deployment)
    assert meter.gpus_by_role() == {"prefill": (0,), "decode": (0,)}
    with meter.window("co") as handle:
        cluster.clock.advance(5.0)
    assert dict(handle.result.joules_by_gpu) == {0: pytest.approx(2000.0, abs=QUANTUM_J)}   # GPU 1 of node-b
    assert cluster.backend.started == ["node-b"]               # node-a has no server: no sampler


def test_samplers_start_once_per_node_for_the_session(cluster):
    first = SimpleNamespace(servers=(server("prefill", "node-a", 0), server("decode", "node-b", 0)))
    second = SimpleNamespace(servers=(server("prefill", "node-b", 1), server("decode", "node-a", 1)))
    cluster.energy.for_deployment(first)
    meter = cluster.energy.for_deployment(second)
    assert cluster.backend.started == ["node-a", "node-b"]
    assert meter.gpus_by_role() == {"prefill": (1,), "decode": (0,)}    # sorted by node: a1 is key 0


def test_local_windows_and_records_keep_their_shape(cluster):
    """One machine's window and record carry no gpu_nodes key: the local JSON is as before."""
    sampler = cluster.backend.samplers.setdefault(
        "here", NodeSampler([0], nvml=FakeNvml(1, clock=cluster.clock), sample_interval_s=None,
                            clock=cluster.clock, sleep=cluster.clock.sleep))
    sampler.begin("w")
    cluster.clock.advance(2.0)
    window = EnergyWindow.from_json(sampler.end("w"))
    assert window.gpu_nodes is None and "gpu_nodes" not in window.to_json()
    record = attribute(window, prefill_gpus=[0], decode_gpus=[0], prompt_tokens=1, output_tokens=1, requests=1).record()
    assert "gpu_nodes" not in record


def test_a_dead_node_is_an_error_naming_it_and_the_live_node_keeps_no_window(cluster):
    deployment = SimpleNamespace(servers=(server("prefill", "node-a", 0), server("decode", "node-b", 0)))
    meter = cluster.energy.for_deployment(deployment)
    meter.begin("w")
    cluster.backend.kill("node-b")
    with pytest.raises(NodeSamplerError, match="node node-b") as info:
        meter.end("w")
    assert info.value.node == "node-b"
    assert cluster.backend.samplers["node-a"].open_windows() == []
    with pytest.raises(NodeSamplerError, match="node-b"):
        with meter.window("again"):
            pass
    assert cluster.backend.samplers["node-a"].open_windows() == []


def test_a_gpu_the_node_does_not_meter_is_named_with_its_node():
    w = EnergyWindow(name="w", seconds=1.0, joules_by_gpu={0: 5.0}, reliable=True, method="counter",
                     counter_period_s=0.1, method_by_gpu={0: "counter"})
    with pytest.raises(NodeSamplerError, match=r"node n1: it does not meter GPU 3"):
        merge_windows("w", {"n1": w}, placement([server("decode", "n1", 3)]))


def test_merged_window_is_as_reliable_as_its_least_reliable_node():
    def w(seconds, reliable, notes=()):
        return EnergyWindow(name="w", seconds=seconds, joules_by_gpu={0: 1.0}, reliable=reliable, method="counter",
                            counter_period_s=0.1, method_by_gpu={0: "counter"}, notes=notes)

    merged = merge_windows("w", {"a": w(2.0, True), "b": w(2.5, False, ("short",))},
                           placement([server("prefill", "a", 0), server("decode", "b", 0)]))
    assert not merged.reliable and merged.seconds == 2.5
    assert "node b: short" in merged.notes
    assert any("differ in length by 0.500 s" in n for n in merged.notes)


def test_a_server_without_a_node_is_refused():
    with pytest.raises(ValueError, match="prefill server has no node id"):
        placement([server("prefill", None, 0)])


def test_node_fingerprint_names_gpu_models_and_driver_not_node_ids(cluster):
    ids = cluster.energy.identities(["node-b", "node-a"])
    assert ids["node-a"]["driver"] == FAKE_DRIVER
    assert [g["index"] for g in ids["node-b"]["gpus"]] == [0, 1]
    assert node_fingerprint(ids) == [{"gpu": ["Fake B200", "Fake H100"], "driver": FAKE_DRIVER},
                                     {"gpu": ["Fake H100", "Fake H100"], "driver": FAKE_DRIVER}]


def test_a_stopped_sampler_leaves_no_thread_and_no_nvml_session():
    fake = FakeNvml(1)
    sampler = NodeSampler([0], nvml=fake, sample_interval_s=0.01, measure_period=False)
    assert any(t.name == "disagg-energy-sampler" for t in threading.enumerate())
    sampler.stop()
    assert not any(t.name == "disagg-energy-sampler" and t.is_alive() for t in threading.enumerate())
    assert fake.inits == fake.shutdowns


def test_nvml_source_loads_a_factory_from_a_file(tmp_path):
    (tmp_path / "mynvml.py").write_text("def make():\n    return 'binding'\n")
    assert load_nvml_source(f"{tmp_path / 'mynvml.py'}:make") == "binding"
    with pytest.raises(ValueError, match="'module:factory'"):
        load_nvml_source("no-colon")


def test_deployment_meter_refuses_a_deployment_without_gpus(cluster):
    with pytest.raises(ValueError, match="use no GPU"):
        DeploymentMeter(cluster.backend, [server("prefill", "node-a")])


def fake_config(launcher, device):
    from pytest_disagg.session import OPTIONS_KEY

    config = SimpleNamespace(stash=pytest.Stash(), cleanups=[])
    config.add_cleanup = config.cleanups.append
    config.stash[OPTIONS_KEY] = SimpleNamespace(launcher=launcher, device=device)
    return config


@pytest.mark.parametrize("launcher, device", [("local", "cuda"), ("local", "cpu"), ("ray", "cpu")])
def test_energy_is_read_here_unless_ray_runs_the_servers_on_gpus(launcher, device):
    from pytest_disagg.deploy.pytest_plugin import remote_energy

    config = fake_config(launcher, device)
    assert remote_energy(config) is None and config.cleanups == []


def test_ray_on_gpus_gives_one_node_energy_per_session_closed_at_the_end():
    pytest.importorskip("ray", reason="ray is not installed")
    from pytest_disagg.deploy.launchers.ray_energy import RaySamplers
    from pytest_disagg.deploy.pytest_plugin import remote_energy

    config = fake_config("ray", "cuda")
    energy = remote_energy(config)
    assert isinstance(energy, NodeEnergy) and isinstance(energy.backend, RaySamplers)
    assert remote_energy(config) is energy and config.cleanups == [energy.close]


def test_measure_binds_a_node_meter_to_the_deployment_and_leaves_a_local_one(cluster):
    from pytest_disagg.measure import _bound

    deployment = SimpleNamespace(servers=(server("prefill", "node-a", 1), server("decode", "node-b", 1)))
    meter, roles = _bound(cluster.energy, deployment)
    assert isinstance(meter, DeploymentMeter) and roles == {"prefill": (0,), "decode": (1,)}
    local = object()
    assert _bound(local, deployment) == (local, {"prefill": (1,), "decode": (1,)})
