"""GPU energy under ``--disagg-launcher=ray``: an NVML sampler actor on each GPU node.

The actor is :class:`pytest_disagg.energy.nodes.NodeSampler` (an ``EnergyMeter`` through the
read-only NVML guard) pinned to its node with ``NodeAffinitySchedulingStrategy`` (the node id the
launcher recorded for the server, ``ServerHandle.node``), asking for no GPU and no CPU so that it
takes nothing the servers' placement-group bundles reserve. NVML sees every GPU of the node
whatever ``CUDA_VISIBLE_DEVICES`` Ray sets for a GPU-less actor.

Lifetime: one actor per node, started the first time a deployment on that node is measured,
killed by :meth:`RaySamplers.close` at session end. Actors are not detached, so they also die with
the driver; a killed actor's process takes its sampler thread and NVML handles with it.
"""
from __future__ import annotations

from typing import Any, Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ...energy.nodes import NodeSampler, NodeSamplerError

START_TIMEOUT_S = 120.0     # includes the idle measurement and the counter-period probe
CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@ray.remote(max_restarts=0, max_task_retries=0)
class EnergySamplerActor(NodeSampler):
    """A :class:`NodeSampler` in a Ray actor: its methods, called with ``.remote``."""

    def node_id(self) -> str:
        """The Ray node this actor runs on (to check the pinning)."""
        return ray.get_runtime_context().get_node_id()


class RaySamplers:
    """The :class:`~pytest_disagg.energy.nodes.SamplerBackend` over Ray actors.

    ``nvml_source`` is for tests only: ``"module:factory"`` or ``"file.py:factory"`` naming a fake
    NVML binding the actors load instead of ``pynvml`` (see ``energy.nodes.load_nvml_source``).
    """

    def __init__(self, *, sample_interval_s: float = 0.1, idle_seconds: float = 2.0,
                 nvml_source: str | None = None):
        self.sample_interval_s = sample_interval_s
        self.idle_seconds = idle_seconds
        self.nvml_source = nvml_source
        self.actors: dict[str, Any] = {}

    def ensure(self, nodes: Sequence[str]) -> None:
        starting = {}
        for node in nodes:
            if node in self.actors:
                continue
            actor = EnergySamplerActor.options(
                num_cpus=0, num_gpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
            ).remote(None, nvml_source=self.nvml_source, sample_interval_s=self.sample_interval_s,
                     idle_seconds=self.idle_seconds)
            self.actors[node] = actor
            starting[node] = actor.identity.remote()      # returns once __init__ (the meter start) is done
        for node, ref in starting.items():
            try:
                ray.get(ref, timeout=START_TIMEOUT_S)
            except Exception as exc:
                self._kill(node)
                raise NodeSamplerError(node, f"could not start: {_reason(exc)}") from None

    def call(self, nodes: Sequence[str], method: str, *args: Any) -> dict[str, Any]:
        refs = {}
        for node in nodes:
            actor = self.actors.get(node)
            if actor is None:
                raise NodeSamplerError(node, "no sampler was started there")
            refs[node] = getattr(actor, method).remote(*args)
        out, failed = {}, None
        for node, ref in refs.items():       # collect every answer, so no call is left in flight
            try:
                out[node] = ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                failed = failed or (node, exc)
        if failed is not None:
            node, exc = failed
            if isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError)):
                self._kill(node)              # gone or hung: never ask it again
            raise NodeSamplerError(node, f"{method}({', '.join(map(repr, args))}) failed: {_reason(exc)}") from None
        return out

    def close(self) -> None:
        """Stop each sampler (its thread and NVML session), then kill its actor; idempotent."""
        if not ray.is_initialized():     # disconnected: the actors died with the connection
            self.actors.clear()
            return
        stopping = {}
        for node, actor in self.actors.items():
            try:
                stopping[node] = actor.stop.remote()
            except Exception:
                pass
        for node, ref in stopping.items():
            try:
                ray.get(ref, timeout=STOP_TIMEOUT_S)
            except Exception:        # dead already, or hung: the kill below ends it either way
                pass
        for node in list(self.actors):
            self._kill(node)

    def _kill(self, node: str) -> None:
        actor = self.actors.pop(node, None)
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:        # the cluster is gone already
                pass


def gpu_nodes() -> list[str]:
    """Ids of the live Ray nodes that offer GPUs."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ray.exceptions.RayActorError):
        return "its actor died"
    if isinstance(exc, ray.exceptions.GetTimeoutError):
        return "no answer in time"
    cause = getattr(exc, "cause", None)       # RayTaskError: the exception raised in the actor
    return f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(exc).__name__}: {exc}"
