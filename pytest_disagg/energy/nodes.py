"""GPU energy of a deployment whose servers run on other nodes: one sampler per node, one record.

Why: with ``--disagg-launcher=ray`` the servers' GPUs are on other machines, where a meter in
pytest's process reads nothing of theirs. So each GPU node runs a :class:`NodeSampler` (an
:class:`~.nvml.EnergyMeter` over that node's GPUs; ``deploy/launchers/ray_energy.py`` puts it in
a Ray actor on the node), and :class:`DeploymentMeter` opens and closes the same named window on
every node of a deployment and merges the per-node windows into one :class:`EnergyWindow`.

GPU indices repeat across nodes (prefill's GPU 0 and decode's GPU 0 are two GPUs), so the merged
window keys GPUs by their position in the deployment's sorted (node, NVML index) list, and says in
``gpu_nodes`` which node and local index each key was. Attribution then works unchanged: the
deployment meter's :meth:`DeploymentMeter.gpus_by_role` gives prefill's and decode's keys.

No Ray here: a backend (:class:`SamplerBackend`) starts samplers and calls them, so the merge and
the errors are tested with in-process samplers on the fake NVML.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Protocol, Sequence

from . import nvmllib
from .attribution import gpus_by_role
from .nvml import EnergyMeter, WindowHandle, windowed
from .results import EnergyWindow, summarize_methods

# Windows of one name on different nodes open and close a few calls apart. Below one update of
# the NVML energy counter (about 100 ms) that skew is under the counter's own resolution; above,
# the merged window says so.
SKEW_NOTE_S = 0.1


class NodeSamplerError(RuntimeError):
    """A node's sampler failed or is gone; ``node`` names it."""

    def __init__(self, node: str, message: str):
        super().__init__(f"energy sampler on node {node}: {message}")
        self.node = node


def load_nvml_source(source: str) -> Any:
    """TEST ONLY: an NVML binding from ``"module:factory"`` or ``"/path/file.py:factory"``
    (``factory()`` returns it), for samplers in processes a test cannot hand an object to."""
    where, _, attr = source.rpartition(":")
    if not where or not attr:
        raise ValueError(f"an NVML source is 'module:factory' or 'file.py:factory', got {source!r}")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location("_disagg_test_nvml", where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module       # dataclasses in it look their module up there
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, attr)()


class NodeSampler:
    """An :class:`EnergyMeter` over one node's GPUs (every GPU NVML sees there, or those given),
    answering in JSON (what crosses to the driver). The Ray actor is this class on a node."""

    def __init__(self, gpu_indices: Sequence[int] | None = None, *, nvml: Any = None,
                 nvml_source: str | None = None, sample_interval_s: float | None = 0.1,
                 idle_seconds: float = 0.0, **meter_options: Any):
        if nvml is None and nvml_source is not None:
            nvml = load_nvml_source(nvml_source)
        self._nvml = nvml
        gpus = tuple(gpu_indices) if gpu_indices is not None else nvmllib.all_gpus(nvml)
        self.meter = EnergyMeter(gpus, nvml=nvml, sample_interval_s=sample_interval_s, **meter_options)
        self.meter.start()
        try:
            if idle_seconds > 0:
                self.meter.measure_idle(idle_seconds)
        except BaseException:
            self.meter.stop()
            raise

    def identity(self) -> dict:
        """The node's GPUs (index, model, UUID), driver and how each GPU is metered."""
        info = nvmllib.gpu_info(self._nvml)
        return {**self.meter.info.to_json(), "driver": info.get("driver"), "cuda_driver": info.get("cuda_driver")}

    def begin(self, name: str) -> None:
        self.meter.begin(name)

    def end(self, name: str) -> dict:
        return self.meter.end(name).to_json()

    def cancel(self, name: str) -> None:
        self.meter.cancel(name)

    def open_windows(self) -> list[str]:
        return list(self.meter.open_windows())

    def stop(self) -> None:
        self.meter.stop()


class SamplerBackend(Protocol):
    """Where samplers run. ``ensure`` starts one per node not yet seen (once per session);
    ``call`` runs a :class:`NodeSampler` method on each node and returns the answers by node,
    raising :class:`NodeSamplerError` naming the first node that failed; ``close`` ends them all."""

    def ensure(self, nodes: Sequence[str]) -> None: ...

    def call(self, nodes: Sequence[str], method: str, *args: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class GpuPlace:
    """Where a merged window's GPU key was: its node and its NVML index there."""

    node: str
    index: int

    def to_json(self) -> dict:
        return {"node": self.node, "index": self.index}


def placement(servers: Iterable[Any]) -> tuple[GpuPlace, ...]:
    """The deployment's GPUs as sorted (node, index) places; a key is a position in this tuple."""
    places: set[GpuPlace] = set()
    for s in servers:
        node = getattr(s, "node", None)
        if not node:
            raise ValueError(f"{s.role} server has no node id: it was not started by a remote launcher")
        places.update(GpuPlace(node, int(g)) for g in s.gpu_indices)
    if not places:
        raise ValueError("the deployment's servers use no GPU")
    return tuple(sorted(places, key=lambda p: (p.node, p.index)))


def merge_windows(name: str, per_node: Mapping[str, EnergyWindow], places: Sequence[GpuPlace]) -> EnergyWindow:
    """One window of the deployment's GPUs from its nodes' windows of the same name.

    Joules, methods, power integrals and idle watts are re-keyed by place; the window's length is
    the longest node's, ``reliable`` only if every node's is, the counter period the longest.
    """
    key = {p: i for i, p in enumerate(places)}
    joules: dict[int, float] = {}
    methods: dict[int, str] = {}
    integrals: dict[int, float | None] = {}
    idle: dict[int, float] | None = {}
    notes: list[str] = []
    for place in places:
        window = per_node.get(place.node)
        if window is None:
            raise NodeSamplerError(place.node, f"no window {name!r} came back")
        if place.index not in window.joules_by_gpu:
            raise NodeSamplerError(place.node, f"it does not meter GPU {place.index} "
                                               f"(it meters {sorted(window.joules_by_gpu)})")
        k = key[place]
        joules[k] = window.joules_by_gpu[place.index]
        methods[k] = window.method_by_gpu.get(place.index, window.method)
        integrals[k] = window.power_integral_j_by_gpu.get(place.index)
        if idle is not None and window.idle_watts_by_gpu is not None:
            idle[k] = window.idle_watts_by_gpu[place.index]
        else:
            idle = None
    windows = [per_node[n] for n in sorted({p.node for p in places})]
    for node, window in sorted(per_node.items()):
        notes.extend(f"node {node}: {n}" for n in window.notes)
    seconds = [w.seconds for w in windows]
    if max(seconds) - min(seconds) > SKEW_NOTE_S:
        notes.append(f"nodes' windows differ in length by {max(seconds) - min(seconds):.3f} s")
    periods = [w.counter_period_s for w in windows if w.method != "power-integral"]
    return EnergyWindow(
        name=name,
        seconds=max(seconds),
        joules_by_gpu=joules,
        reliable=all(w.reliable for w in windows),
        method=summarize_methods(methods),
        counter_period_s=None if not periods or None in periods else max(periods),
        method_by_gpu=methods,
        power_integral_j_by_gpu=integrals,
        idle_watts_by_gpu=idle,
        idle_subtracted=all(w.idle_subtracted for w in windows),
        started_unix_s=min((w.started_unix_s for w in windows if w.started_unix_s is not None), default=None),
        notes=tuple(notes),
        gpu_nodes={key[p]: p.to_json() for p in places},
    )


class DeploymentMeter:
    """The ``window``/``begin``/``end`` face of :class:`EnergyMeter` for one deployment's GPUs on
    their nodes; windows come back merged (:func:`merge_windows`)."""

    def __init__(self, backend: SamplerBackend, servers: Sequence[Any]):
        self.servers = tuple(servers)
        self.places = placement(self.servers)
        self.nodes = tuple(sorted({p.node for p in self.places}))
        self._backend = backend
        backend.ensure(self.nodes)

    def gpus_by_role(self) -> dict[str, tuple[int, ...]]:
        """Prefill's and decode's GPU keys in this meter's windows (colocated: both)."""
        key = {p: i for i, p in enumerate(self.places)}
        return gpus_by_role(SimpleNamespace(role=s.role, gpu_indices=[key[GpuPlace(s.node, int(g))] for g in s.gpu_indices])
                            for s in self.servers)

    def begin(self, name: str) -> None:
        try:
            self._backend.call(self.nodes, "begin", name)
        except BaseException:
            self.cancel(name)        # nodes that did open it must not keep it open
            raise

    def end(self, name: str) -> EnergyWindow:
        try:
            answers = self._backend.call(self.nodes, "end", name)
        except BaseException:
            self.cancel(name)
            raise
        per_node = {node: EnergyWindow.from_json(doc) for node, doc in answers.items()}
        return merge_windows(name, per_node, self.places)

    def cancel(self, name: str) -> None:
        """Drop ``name`` wherever it is open; a node that is gone has nothing to drop."""
        for node in self.nodes:
            with contextlib.suppress(NodeSamplerError):
                self._backend.call((node,), "cancel", name)

    def window(self, name: str) -> contextlib.AbstractContextManager[WindowHandle]:
        return windowed(self, name)


class NodeEnergy:
    """The session's remote energy: samplers started on a deployment's nodes when it is first
    measured, one per node for the session; :meth:`for_deployment` gives that deployment's meter."""

    def __init__(self, backend: SamplerBackend):
        self.backend = backend
        self._identities: dict[str, dict] = {}

    def for_deployment(self, deployment: Any) -> DeploymentMeter:
        return DeploymentMeter(self.backend, deployment.servers)

    def identities(self, nodes: Sequence[str]) -> dict[str, dict]:
        """Each node's :meth:`NodeSampler.identity` (read once per node)."""
        todo = [n for n in nodes if n not in self._identities]
        if todo:
            self.backend.ensure(todo)
            self._identities.update(self.backend.call(todo, "identity"))
        return {n: self._identities[n] for n in nodes}

    def close(self) -> None:
        self.backend.close()


def node_fingerprint(identities: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Per GPU node: its GPU models and driver, sorted, without node ids (they change per cluster
    and would give every session a new baseline)."""
    rows = [{"gpu": sorted(g["name"] for g in ident["gpus"]), "driver": ident.get("driver")}
            for ident in identities.values()]
    return sorted(rows, key=lambda r: (r["gpu"], str(r["driver"])))


__all__ = ["DeploymentMeter", "GpuPlace", "NodeEnergy", "NodeSampler", "NodeSamplerError", "SamplerBackend",
           "load_nvml_source", "merge_windows", "node_fingerprint", "placement"]
