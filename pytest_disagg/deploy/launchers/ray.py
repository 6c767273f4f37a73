"""The Ray launcher: each vLLM server (the same command line as locally) inside a Ray actor.

One placement group per deployment, one bundle per server: ``STRICT_SPREAD`` when the cluster
has at least as many suitable nodes as servers (prefill and decode on different nodes), ``PACK``
otherwise. The actor starts the server through the same supervisor as the local launcher
(``processes.start``), so the server's whole process tree ends when the actor's process dies — the
supervisor watches a pipe whose write end only the actor holds. The actor reports the server's
pid, host, ports and Ray node id; stopping kills the tree, then the actor, then (when the last
server of the deployment is gone) the placement group.

The driver side (:class:`RayChild`) quacks like :class:`processes.Child`, so the pool watches and
stops Ray servers exactly like local ones. Ports are chosen where pytest runs and must be free on
the nodes; the server binds the node's Ray IP (127.0.0.1 on a loopback cluster).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ...children import processes

# Environment the server needs from pytest's side; everything else comes from the node itself.
PASS_PREFIXES = ("VLLM_", "UCX_", "NIXL_", "LMCACHE_", "HF_", "TRANSFORMERS_", "OMP_", "PYTHON")
PG_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0


def env_for_node(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """What to set on the node (changed by the pool or named by a prefix above) and what to unset."""
    here = os.environ
    set_ = {k: v for k, v in env.items() if here.get(k) != v or k.startswith(PASS_PREFIXES)}
    unset = [k for k in ("CUDA_VISIBLE_DEVICES",) if k in here and k not in env]
    return set_, unset


def with_host(cmd: Sequence[str], host: str) -> list[str]:
    out = list(cmd)
    if "--host" in out:
        out[out.index("--host") + 1] = host
    return out


@ray.remote(max_restarts=0)
class ServerActor:
    """Runs one server on its node; its death (any cause) takes the server's tree with it."""

    def __init__(self):
        self.host = None          # the nodehost process (see nodehost.py: why not the supervisor directly)
        self.pid = None
        self.lock = threading.Lock()

    def start(self, name, cmd, env_set, env_unset, log_path, ports, grace_s):
        host = ray.util.get_node_ip_address()
        env = dict(os.environ)
        for k in env_unset:
            env.pop(k, None)
        env.update(env_set)
        env.setdefault("VLLM_NIXL_SIDE_CHANNEL_HOST", host)
        here = str(Path(__file__).resolve().parents[3])
        self.host = subprocess.Popen([sys.executable, "-m", "pytest_disagg.deploy.launchers.nodehost"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", "")))
        answer = self._ask({"name": name, "cmd": with_host(cmd, host), "env": env, "log_path": log_path,
                            "ports": list(ports), "grace_s": grace_s})
        if "error" in answer:
            raise RuntimeError(answer["error"])
        self.pid = answer["pid"]
        return {"pid": self.pid, "host": host, "ports": list(ports), "log": str(log_path),
                "node_id": ray.get_runtime_context().get_node_id(), "actor_pid": os.getpid()}

    def _ask(self, request: dict) -> dict:
        with self.lock:
            self.host.stdin.write(json.dumps(request) + "\n")
            self.host.stdin.flush()
            line = self.host.stdout.readline()
        if not line:
            raise RuntimeError("the node host process died")
        return json.loads(line)

    def _op(self, op, **kw):
        return self._ask({"op": op, **kw})["result"]

    def alive(self):
        return self.host is not None and self.host.poll() is None and self._op("alive")

    def poll(self):
        return self._op("poll")

    def status_text(self):
        return self._op("status_text")

    def explain(self, what, lines):
        return self._op("explain", what=what, lines=lines)

    def listening(self):
        """(pid, ip, port) of every listening socket of the server's tree (the loopback guard)."""
        import psutil   # optional dependency (a ray dependency)

        out = []
        try:
            root = psutil.Process(self.pid)
            for p in [root, *root.children(recursive=True)]:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        out.append((p.pid, c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
        return out

    def stop(self):
        if self.host is None or self.host.poll() is not None:
            return None
        try:
            status = self._op("stop")
        except (RuntimeError, OSError, ValueError):
            status = None
        self.host.wait(timeout=30)
        return status


class _Group:
    """A deployment's placement group, removed when its last server has stopped."""

    def __init__(self, pg, members: int):
        self.pg = pg
        self.members = members
        self.lock = threading.Lock()

    def leave(self) -> None:
        with self.lock:
            self.members -= 1
            if self.members == 0 and self.pg is not None:
                try:
                    remove_placement_group(self.pg)
                except Exception:   # the cluster is gone already
                    pass
                self.pg = None


class _ActorProcess:
    """The Popen-like face ``processes.stop_all`` talks to: SIGTERM asks the actor to stop its server,
    wait() waits for that, then kills the actor (never raises TimeoutExpired: nothing local to kill)."""

    pid = -1

    def __init__(self, child: "RayChild"):
        self.child = child
        self._stopping = None

    def poll(self):
        return self.child.poll()

    def send_signal(self, sig):
        if self._stopping is None:
            self._stopping = self.child.actor.stop.remote()

    def wait(self, timeout=None):
        try:
            if self._stopping is not None:     # the server's own grace period, then a margin for Ray
                wait_s = max(timeout or 0.0, self.child.grace_s + 20)
                self.child._status = ray.get(self._stopping, timeout=wait_s)
        except Exception:
            pass
        self.child.finish()
        return self.child._status


class RayChild:
    """A server in a Ray actor, as the pool sees a child."""

    def __init__(self, name, cmd, actor, info: dict, log_path, grace_s, group: _Group):
        self.name = name
        self.cmd = tuple(cmd)
        self.actor = actor
        self.pid = info["pid"]
        self.host = info["host"]
        self.node_id = info["node_id"]
        self.actor_pid = info["actor_pid"]
        self.ports = tuple(info["ports"])
        self.log_path = Path(log_path)
        self.grace_s = grace_s
        self.started = time.monotonic()
        self.stopped_by_us = False
        self.supervisor = _ActorProcess(self)
        self._status = None
        self._group = group
        self._finished = False
        self._log = None

    def _call(self, method, *args, timeout=CALL_TIMEOUT_S):
        return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout)

    def alive(self) -> bool:
        if self._finished:
            return False
        try:
            return bool(self._call("alive"))
        except Exception:        # the actor (and with it the server) is gone
            return False

    def poll(self):
        if self._finished or self._status is not None:
            return self._status
        try:
            self._status = self._call("poll")
        except Exception:
            self._status = -9     # actor died: its server was killed with it
        return self._status

    def status_text(self) -> str:
        try:
            return self._call("status_text")
        except Exception as exc:
            return f"is gone with its Ray actor ({type(exc).__name__})"

    def explain(self, what: str, lines: int = 50) -> str:
        try:
            return self._call("explain", what, lines)
        except Exception as exc:
            return (f"{self.name} (pid {self.pid} on Ray node {self.node_id[:12]}) {what}\n"
                    f"command: {' '.join(self.cmd)}\n(its Ray actor is gone, no log tail: {exc})")

    def listening(self):
        return self._call("listening")

    def finish(self) -> None:
        """Kill the actor (its server's tree dies with it) and release the placement group; once."""
        if self._finished:
            return
        self._finished = True
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass
        self._group.leave()


class RayLauncher:
    name = "ray"

    def __init__(self, address: str = "auto", resource: str | None = None, num_cpus: float = 1.0,
                 num_gpus_per_server: float = 0.0):
        self.address = address
        self.resource = resource
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus_per_server
        self._connected_here = False
        self.last_strategy: str | None = None
        self._groups: list[_Group] = []

    def connect(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            self._connected_here = True

    def bundle(self) -> dict:
        b = {"CPU": self.num_cpus}
        if self.num_gpus:
            b["GPU"] = self.num_gpus
        if self.resource:
            b[self.resource] = 1
        return b

    def suitable_nodes(self) -> list[dict]:
        need = self.bundle()
        return [n for n in ray.nodes() if n.get("Alive")
                and all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items())]

    def for_deployment(self, roles: Sequence[str]):
        self.connect()
        strategy = "STRICT_SPREAD" if len(self.suitable_nodes()) >= len(roles) >= 2 else "PACK"
        self.last_strategy = strategy
        pg = placement_group([self.bundle() for _ in roles], strategy=strategy)
        if not pg.wait(PG_TIMEOUT_S):
            remove_placement_group(pg)
            raise processes.StartError(
                f"Ray placement group {strategy} of {len(roles)} x {self.bundle()} not placed within "
                f"{PG_TIMEOUT_S:.0f} s (suitable nodes: {len(self.suitable_nodes())})")
        group = _Group(pg, len(roles))
        self._groups.append(group)

        def start(index, name, cmd, *, env, log_path, ports):
            actor = ServerActor.options(
                num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=index),
                name=None).remote()
            env_set, env_unset = env_for_node(env)
            try:
                info = ray.get(actor.start.remote(name, list(cmd), env_set, env_unset, str(log_path), list(ports),
                                                  processes.DEFAULT_GRACE_S), timeout=PG_TIMEOUT_S)
            except Exception as exc:
                ray.kill(actor, no_restart=True)
                group.leave()
                raise processes.StartError(f"{name} could not be started in a Ray actor: {exc}") from None
            return RayChild(name, cmd, actor, info, log_path, processes.DEFAULT_GRACE_S, group)
        return start

    def describe(self) -> dict:
        out = {"launcher": "ray", "ray_address": self.address}
        if ray.is_initialized():
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            out["ray_nodes"] = len(nodes)
            out["ray_gpus"] = sum(n.get("Resources", {}).get("GPU", 0) for n in nodes)
        return out

    def close(self) -> None:
        for group in self._groups:          # a deployment whose start failed half-way
            group.members = 1
            group.leave()
        self._groups = []
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
        self._connected_here = False
