"""--disagg-launcher=ray on one CPU machine: a two-node loopback Ray cluster (Ray's own
``cluster_utils.Cluster``), prefill and decode of ``nixl-cpu`` in Ray actors on different nodes,
the KV self-check passing, every address bound on 127.0.0.0/8, nothing left afterwards.

Loopback only: Ray picks this host's private address for a node and "resolves" 127.0.0.1 to it
when connecting; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray's own address lookup answer
127.0.0.1 (every Ray process inherits it), the nodes get ``node_ip_address=127.0.0.1`` and UCX is
kept on the loopback device.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request

import psutil
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'pytest-disagg[ray]')")

from pytest_disagg.children import processes  # noqa: E402
from pytest_disagg.deploy.launchers import make_launcher  # noqa: E402
from pytest_disagg.deploy.pool import DeploymentConfig, DeploymentPool  # noqa: E402
from pytest_disagg.mediums import MediumRegistry, detect_install  # noqa: E402
from pytest_disagg.testing.procs import is_loopback, listening  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.disagg]

RESOURCE = "disagg_node"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "UCX_NET_DEVICES": "lo", "UCX_TLS": "tcp,self"}


@pytest.fixture(scope="module")
def loopback_cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    for k, v in LOOPBACK_ENV.items():
        mp.setenv(k, v)
    mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)   # this process imported ray already
    node = dict(num_cpus=1, resources={RESOURCE: 1}, node_ip_address="127.0.0.1",
                object_store_memory=100 * 1024 * 1024)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    print(f"loopback Ray cluster of 2 nodes up in {time.monotonic() - t0:.1f} s")
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        mp.undo()
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        gone, alive = psutil.wait_procs(left, timeout=15)
        assert not alive, f"Ray processes left after shutdown: {[(p.pid, p.name()) for p in alive]}"


def test_ray_nodes_are_on_loopback(loopback_cluster):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
    ray_pids = [p.pid for p in psutil.Process().children(recursive=True)]
    bound = listening(ray_pids)
    assert bound, "no listening Ray process found: the guard would prove nothing"
    assert all(is_loopback(ip) for _, _, ip, _ in bound), bound


# Disk's storage hand-off through Ray repeats the local disk deployment's path: `tox -e full` only.
@pytest.mark.parametrize("medium_name", ["nixl-cpu", pytest.param("disk", marks=pytest.mark.repeats)])
def test_prefill_and_decode_on_different_ray_nodes(loopback_cluster, tmp_path, medium_name):
    """NIXL's side channel and the disk medium's shared directory both cross the two Ray nodes
    (one host here: the directory is on the filesystem both nodes see, as on a cluster's shared
    storage); the self-check proves the KV moved either way."""
    registry = MediumRegistry()
    medium = registry.get(medium_name)
    missing = detect_install(list(registry)).missing_for(medium, "cpu")
    if missing:
        pytest.skip(f"{medium_name} unavailable: " + "; ".join(missing))
    launcher = make_launcher("ray", address=loopback_cluster.address, resource=RESOURCE)
    pool = DeploymentPool(registry, logs_dir=tmp_path / "logs", server_timeout_s=600, launcher=launcher)
    config = DeploymentConfig(medium=medium_name, block_size=32)
    try:
        d = pool.get(config)
        print(f"ray {medium_name} deployment start-up {d.startup_s:.1f} s (servers "
              f"{', '.join(f'{s.role} {s.startup_s:.1f} s' for s in d.servers)})")
        assert launcher.last_strategy == "STRICT_SPREAD"
        record = d.to_json()                            # what the results JSON stores per run
        nodes = {s["role"]: s.get("node") for s in record["servers"]}
        assert set(nodes) == {"prefill", "decode"} and all(nodes.values()), nodes
        assert nodes["prefill"] != nodes["decode"], f"prefill and decode share Ray node {nodes['prefill']}"
        assert d.selfcheck and d.selfcheck["passed"], d.selfcheck
        req = urllib.request.Request(d.url + "/v1/completions", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": d.model_name, "prompt": list(range(10, 80)),
                                                      "max_tokens": 4, "ignore_eos": True}).encode())
        with urllib.request.urlopen(req, timeout=300) as resp:
            assert json.loads(resp.read())["usage"]["completion_tokens"] == 4
        # Loopback guard: the servers (and the Ray processes around them) bind 127.0.0.0/8 only.
        children = [c for c in pool._live[config.digest()].children if hasattr(c, "listening")]
        served = [b for c in children for b in c.listening()]
        assert served and all(is_loopback(ip) for _, ip, _ in served), served
        assert all(s.url.startswith("http://127.0.0.1:") for s in d.servers)
        ray_bound = listening([p.pid for p in psutil.Process().children(recursive=True)])
        assert all(is_loopback(ip) for _, _, ip, _ in ray_bound), ray_bound
        server_pids = [s.pid for s in d.servers]
    finally:
        pool.close()
    procs = []
    for pid in server_pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(procs, timeout=30)    # a tree ended by the actor's death dies async
    assert not alive, f"servers outlived their Ray actors: {alive}"
    assert processes.live_children() == []


def test_actor_death_takes_the_server_with_it(loopback_cluster, tmp_path):
    """Killing the actor (as Ray does when its owner, pytest, dies) ends the server's whole tree."""
    launcher = make_launcher("ray", address=loopback_cluster.address, resource=RESOURCE)
    start = launcher.for_deployment(["colocated"])
    cmd = [os.sys.executable, "-c", "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c',"
           "'import time; time.sleep(600)']); time.sleep(600)"]
    child = start(0, "sleeper", cmd, env=dict(os.environ), log_path=tmp_path / "sleeper.log", ports=())
    try:
        for _ in range(100):          # the grandchild appears a moment after the start
            if psutil.Process(child.pid).children():
                break
            import time
            time.sleep(0.1)
        tree = [child.pid] + [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        assert child.alive() and len(tree) == 2, tree
        ray.kill(child.actor, no_restart=True)
        gone, alive = psutil.wait_procs([psutil.Process(p) for p in tree if psutil.pid_exists(p)], timeout=20)
        assert not alive, f"left after the actor died: {alive}"
        assert not child.alive()
    finally:
        processes.stop_all([child])
        launcher.close()


def test_energy_samplers_on_two_nodes_attribute_gpus_by_node(loopback_cluster):
    """One NVML sampler actor per node (fake NVML: GPU 0 at 100 W, GPU 1 at 300 W), pinned to its
    node; a window's record gives prefill's GPU on one node and decode's on the other. No servers:
    the deployment is a description of roles, node ids and GPU indices. A killed actor is an error
    naming its node, and closing leaves no actor."""
    from types import SimpleNamespace

    from pytest_disagg.deploy.launchers.ray_energy import RaySamplers
    from pytest_disagg.energy.attribution import attribute
    from pytest_disagg.energy.nodes import NodeEnergy, NodeSamplerError, node_fingerprint

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    source = f"{os.path.join(os.path.dirname(__file__), 'fake_nvml.py')}:two_gpus_in_real_time"
    backend = RaySamplers(sample_interval_s=0.05, idle_seconds=0, nvml_source=source)
    energy = NodeEnergy(backend)
    deployment = SimpleNamespace(servers=(SimpleNamespace(role="prefill", node=nodes[0], gpu_indices=(0,)),
                                          SimpleNamespace(role="decode", node=nodes[1], gpu_indices=(1,))))
    try:
        meter = energy.for_deployment(deployment)
        actors = dict(backend.actors)
        assert {n: ray.get(a.node_id.remote(), timeout=30) for n, a in actors.items()} == {n: n for n in nodes}
        with meter.window("run") as handle:
            time.sleep(1.0)
        roles = meter.gpus_by_role()
        record = attribute(handle.result, prefill_gpus=roles["prefill"], decode_gpus=roles["decode"],
                           prompt_tokens=10, output_tokens=10, requests=1).record()
        stages = {s["role"]: s for s in record["stages"]}
        where = {int(k): v for k, v in record["gpu_nodes"].items()}
        assert [where[g] for g in stages["prefill"]["gpus"]] == [{"node": nodes[0], "index": 0}]
        assert [where[g] for g in stages["decode"]["gpus"]] == [{"node": nodes[1], "index": 1}]
        assert 0 < 2 * stages["prefill"]["joules"] < stages["decode"]["joules"]     # 100 W vs 300 W
        assert node_fingerprint(energy.identities(nodes)) == [{"gpu": ["Fake H100"] * 2, "driver": "999.99-fake"}] * 2

        ray.kill(actors[nodes[1]], no_restart=True)
        with pytest.raises(NodeSamplerError, match=nodes[1]):
            meter.begin("after")
        assert ray.get(actors[nodes[0]].open_windows.remote(), timeout=30) == []
    finally:
        energy.close()
    assert backend.actors == {}
    for node, actor in actors.items():     # ray.kill is asynchronous: a call just after may still run
        for _ in range(150):
            try:
                ray.get(actor.node_id.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the sampler actor on node {node} outlived close()")
