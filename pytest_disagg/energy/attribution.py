"""Energy per stage and per unit of work: prefill vs decode GPUs, J/token, J/request, totals.

Why: the suite's headline energy figures are joules per prompt token for prefill, per output token
for decode, and per request, against the colocated baseline. A GPU's counter cannot tell which
stage spent its energy, so a stage figure exists only when each stage has GPUs of its own. When a
GPU serves both stages (colocated serving, or an overlap), the whole-GPU figure is reported under
the label ``shared`` with joules per (prompt + output) token, and never split by a guessed ratio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, TypedDict

from .ipmi import COMPONENT as NODE_COMPONENT
from .results import EnergyFigure, EnergyWindow

ROLE_PREFILL = "prefill"
ROLE_DECODE = "decode"
ROLE_SHARED = "shared"
# Components that contain others (the whole node; RAPL psys; core and uncore inside the package):
# reported per token, but never summed with the disjoint ones into a share.
CONTAINERS = frozenset({NODE_COMPONENT, "platform"})
INSIDE_PACKAGE = frozenset({"cpu-core", "cpu-uncore"})


@dataclass(frozen=True)
class StageEnergy:
    """Energy of one stage's GPUs, and per the tokens that stage produced."""

    role: str                    # "prefill" | "decode" | "shared"
    gpus: tuple[int, ...]
    joules: float
    tokens: int
    token_kind: str              # "prompt" | "output" | "prompt+output"
    joules_per_token: float | None

    def to_json(self) -> dict:
        return {
            "role": self.role,
            "gpus": list(self.gpus),
            "joules": self.joules,
            "tokens": self.tokens,
            "token_kind": self.token_kind,
            "joules_per_token": self.joules_per_token,
        }


class _EnergyRecordKeys(TypedDict):
    """The keys every energy record has (see :class:`EnergyRecord`)."""

    window: str
    seconds: float
    stages: list[dict]                 # StageEnergy.to_json() per stage (prefill/decode, or shared)
    shared: bool
    gpu_joules: float
    host: list[dict]                   # EnergyFigure.to_json() per host component (may be unavailable)
    total_joules: float
    total_components: list[str]
    unavailable_components: list[str]
    requests: int
    prompt_tokens: int
    output_tokens: int
    joules_per_request: float | None
    joules_per_token: float | None     # total / (prompt + output): the study's figure
    method: str
    counter_period_s: float | None
    reliable: bool
    idle_subtracted: bool
    components: dict[str, dict]        # components(): joules, j_per_token, share | unavailable
    scalars: dict[str, float]          # Attribution.scalars(): flat figures the gate sees


class EnergyRecord(_EnergyRecordKeys, total=False):
    """A run's energy in the results JSON (``Attribution.record()``): the one spelling."""

    gpu_nodes: dict[str, dict]     # GPU key -> {"node", "index"}: only when the GPUs were on other nodes


@dataclass(frozen=True)
class Attribution:
    """Per-stage and whole-deployment energy of one window."""

    window: str
    seconds: float
    stages: tuple[StageEnergy, ...]
    shared: bool
    gpu_joules: float
    host: tuple[EnergyFigure, ...]   # CPU package, DRAM, node...: included only where available
    total_joules: float              # GPUs + available host components
    total_components: tuple[str, ...]
    unavailable_components: tuple[str, ...]
    requests: int
    prompt_tokens: int
    output_tokens: int
    joules_per_request: float | None
    joules_per_token: float | None   # total / (prompt + output), the study's figure
    method: str
    counter_period_s: float | None
    reliable: bool
    idle_subtracted: bool
    gpu_nodes: Mapping[int, Mapping[str, Any]] | None = None   # the window's, when merged from nodes

    def stage(self, role: str) -> StageEnergy:
        for s in self.stages:
            if s.role == role:
                return s
        raise KeyError(f"no {role!r} stage in this attribution (stages: {[s.role for s in self.stages]})")

    def scalars(self) -> dict[str, float]:
        """Flat figures for ``RunResult.scalars()``; missing ones are left out, never 0."""
        out: dict[str, float] = {"energy_gpu_j": self.gpu_joules, "energy_total_j": self.total_joules}
        for s in self.stages:
            out[f"energy_{s.role}_j"] = s.joules
            if s.joules_per_token is not None:
                out[f"energy_{s.role}_j_per_{s.token_kind.replace('+', '_')}_token"] = s.joules_per_token
        if self.joules_per_request is not None:
            out["energy_j_per_request"] = self.joules_per_request
        if self.joules_per_token is not None:
            out["energy_j_per_token"] = self.joules_per_token
        for h in self.host:
            if h.joules is not None:
                out[f"energy_{h.component.replace('-', '_')}_j"] = h.joules
        return out

    def record(self) -> EnergyRecord:
        """The energy record of a run entry in the results JSON (``results.py``): everything of
        :meth:`to_json`, the per-component table (:func:`components`) and the flat
        :meth:`scalars`. One spelling, read by the report as it is."""
        return EnergyRecord(**self.to_json(), components=components(self), scalars=self.scalars())

    def to_json(self) -> dict:
        return {
            "window": self.window,
            "seconds": self.seconds,
            "stages": [s.to_json() for s in self.stages],
            "shared": self.shared,
            "gpu_joules": self.gpu_joules,
            "host": [h.to_json() for h in self.host],
            "total_joules": self.total_joules,
            "total_components": list(self.total_components),
            "unavailable_components": list(self.unavailable_components),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "joules_per_request": self.joules_per_request,
            "joules_per_token": self.joules_per_token,
            "method": self.method,
            "counter_period_s": self.counter_period_s,
            "reliable": self.reliable,
            "idle_subtracted": self.idle_subtracted,
            **({"gpu_nodes": {str(k): dict(v) for k, v in self.gpu_nodes.items()}} if self.gpu_nodes is not None else {}),
        }


def components(attribution: Any) -> dict[str, dict[str, Any]]:
    """Joules per (input + output) token of each component of an attribution (GPU, then host
    components), and its share of the measured total; a component that was not readable says
    why (``unavailable``), and is never 0.

    Shares are taken over the disjoint components (GPU, CPU package, DRAM, ...); the whole node
    and RAPL's platform domain contain those, and core/uncore sit inside the package, so they get
    a figure per token but no share. Reads only ``prompt_tokens``, ``output_tokens``,
    ``gpu_joules`` and ``host`` (figures with ``component``, ``joules``, ``unavailable``).
    """
    tokens = attribution.prompt_tokens + attribution.output_tokens
    rows: dict[str, dict[str, Any]] = {"gpu": {"joules": attribution.gpu_joules}}
    for figure in attribution.host:
        rows[figure.component] = ({"joules": figure.joules} if figure.joules is not None
                                  else {"unavailable": figure.unavailable})
    disjoint = [c for c in rows if c not in CONTAINERS and c not in INSIDE_PACKAGE]
    measured = sum(rows[c]["joules"] for c in disjoint if "joules" in rows[c])
    complete = all("joules" in rows[c] for c in disjoint)
    for component, row in rows.items():
        if "joules" not in row:
            continue
        row["j_per_token"] = row["joules"] / tokens if tokens else None
        if component in disjoint:
            row["share"] = row["joules"] / measured if measured > 0 else None
            row["share_of"] = "measured components" if complete else "measured components (some unavailable)"
    return rows


def gpus_by_role(servers: Iterable[Any]) -> dict[str, tuple[int, ...]]:
    """Prefill and decode GPU indices from a deployment's servers (objects with ``role`` and
    ``gpu_indices``, e.g. ``ServerHandle``); a ``colocated`` server counts for both roles."""
    roles: dict[str, set[int]] = {ROLE_PREFILL: set(), ROLE_DECODE: set()}
    for s in servers:
        role, gpus = getattr(s, "role"), tuple(getattr(s, "gpu_indices"))
        if role == "colocated":
            roles[ROLE_PREFILL].update(gpus)
            roles[ROLE_DECODE].update(gpus)
        elif role in roles:
            roles[role].update(gpus)
        else:
            raise ValueError(f"unknown server role {role!r}")
    return {r: tuple(sorted(g)) for r, g in roles.items()}


def attribute(
    window: EnergyWindow,
    *,
    prefill_gpus: Sequence[int],
    decode_gpus: Sequence[int],
    prompt_tokens: int,
    output_tokens: int,
    requests: int,
    host: Sequence[EnergyFigure] = (),
) -> Attribution:
    """Split ``window`` by role. Every listed GPU must be in the window; the deployment total is
    the sum over the listed GPUs (other GPUs in the window are not this deployment's)."""
    for name, v in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens), ("requests", requests)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    pre, dec = tuple(sorted(set(prefill_gpus))), tuple(sorted(set(decode_gpus)))
    if not pre or not dec:
        raise ValueError("both prefill_gpus and decode_gpus must name at least one GPU "
                         "(for colocated serving, pass the same GPUs for both)")
    used = tuple(sorted(set(pre) | set(dec)))
    missing = [g for g in used if g not in window.joules_by_gpu]
    if missing:
        raise ValueError(f"window {window.name!r} has no figure for GPU(s) {missing} "
                         f"(it measured {sorted(window.joules_by_gpu)})")
    joules = {g: window.joules_by_gpu[g] for g in used}
    shared = bool(set(pre) & set(dec))
    if shared:
        stages: tuple[StageEnergy, ...] = (
            _stage(ROLE_SHARED, used, joules, prompt_tokens + output_tokens, "prompt+output"),
        )
    else:
        stages = (
            _stage(ROLE_PREFILL, pre, joules, prompt_tokens, "prompt"),
            _stage(ROLE_DECODE, dec, joules, output_tokens, "output"),
        )
    gpu_total = float(sum(joules.values()))
    available = [h for h in host if h.joules is not None]
    total = gpu_total + float(sum(h.joules for h in available))
    tokens = prompt_tokens + output_tokens
    return Attribution(
        window=window.name,
        seconds=window.seconds,
        stages=stages,
        shared=shared,
        gpu_joules=gpu_total,
        host=tuple(host),
        total_joules=total,
        total_components=("gpu", *(h.component for h in available)),
        unavailable_components=tuple(h.component for h in host if h.joules is None),
        requests=requests,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        joules_per_request=total / requests if requests else None,
        joules_per_token=total / tokens if tokens else None,
        method=window.method,
        counter_period_s=window.counter_period_s,
        reliable=window.reliable and all(h.reliable for h in available),
        idle_subtracted=window.idle_subtracted,
        gpu_nodes=None if window.gpu_nodes is None else {g: window.gpu_nodes[g] for g in used},
    )


def _stage(role: str, gpus: tuple[int, ...], joules: Mapping[int, float], tokens: int, kind: str) -> StageEnergy:
    j = float(sum(joules[g] for g in gpus))
    return StageEnergy(role=role, gpus=gpus, joules=j, tokens=tokens, token_kind=kind,
                       joules_per_token=j / tokens if tokens else None)
