"""Presets: named sets of configurations, one workload, sweeps and metrics, read from TOML files.

Why: users first ask the suite to re-run the study it comes from, and then to re-run it as vLLM,
LMCache, NIXL and drivers change. A preset file names each of the study's set-ups (its name stays
in test ids and reports), the medium and deployment overrides behind it, the model, the workload,
the clock grid and the metrics, so that ``--disagg-preset=paper`` runs exactly those set-ups.

A machine that cannot run a preset as written runs it adapted, and every id says so:

- on CPU the ``[scaled]`` section applies (tiny model, shorter prompts, smaller batches) so the
  code paths run in CI; configurations carry the variant ``scaled``;
- on fewer GPUs than a configuration needs, its servers share a GPU (variant ``shared-gpu``);
- otherwise the preset runs as written.

Presets live in ``fixtures/presets/<name>.toml``; ``--disagg-preset`` also takes a path. Every
error names the file and the field.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .energy.attribution import components
from .energy.grid import evenly_spaced, parse_range_spec
from .energy.ipmi import COMPONENT as NODE_COMPONENT
from .energy.rapl import COMPONENT_BY_DOMAIN
from .mediums import MediumRegistry
from .metrics import MetricError
from .metrics import describe as describe_metric
from .models import FIXTURES_DIR, ModelConfigError, resolve_model

PRESETS_DIR = FIXTURES_DIR / "presets"

# Per-configuration deployment overrides a preset may set: DeploymentConfig fields with the value
# types they take. Model, context length, label and variant come from the preset itself; device
# and GPUs from the session.
OVERRIDE_TYPES: dict[str, tuple[type, ...]] = {
    "prefix_caching": (bool,),
    "dtype": (str,),
    "block_size": (int,),
    "max_num_seqs": (int,),
    "gpu_memory_utilization": (float, int),
    "extra_server_args": (list,),
}

# Metrics a preset may report beyond ``metrics.METRICS`` (which names every run and request
# figure): this one is a table of figures derived here, not one metric.
PRESET_METRICS: dict[str, str] = {
    "energy_j_per_token_by_component": "each component's joules / (input + output tokens), and its share",
}
STATS = ("mean", "p50", "p90", "p99")   # what a per-request metric is summarised by
ENERGY_COMPONENTS = frozenset({"gpu", NODE_COMPONENT, *COMPONENT_BY_DOMAIN.values()})

APPLY_TO = ("both", "per-stage")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REQUIRED = object()


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the field."""


# --- reading tables with errors that name the field -------------------------------------------
class _Table:
    """One TOML table of a preset file: typed reads, and a check that nothing else is in it."""

    def __init__(self, data: Any, where: str, path: Path):
        if not isinstance(data, dict):
            raise PresetError(f"{path}: {where} must be a table")
        self.data, self.where, self.path, self.read = data, where, path, set()

    def error(self, key: str, problem: str) -> PresetError:
        return PresetError(f"{self.path}: {self.where + '.' if self.where else ''}{key}: {problem}")

    def missing(self, key: str, what: str = "missing") -> PresetError:
        close = difflib.get_close_matches(key, [k for k in self.data if k not in self.read], n=1)
        return self.error(key, what + (f" (is {close[0]!r} a typo?)" if close else ""))

    def get(self, key: str, types: tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise self.missing(key)
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(key, f"{value!r} is not {' or '.join(t.__name__ for t in types)}")
        return value

    def positive_int(self, key: str, default: Any = _REQUIRED) -> int:
        value = self.get(key, (int,), default)
        if value is not default and value <= 0:
            raise self.error(key, f"{value!r} must be > 0")
        return value

    def int_list(self, key: str, default: Any = _REQUIRED) -> tuple[int, ...]:
        value = self.get(key, (list,), default)
        if value is default:
            return value
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise self.error(key, f"{value!r} must be a non-empty list of positive integers")
        if list(value) != sorted(set(value)):
            raise self.error(key, f"{value!r} must be increasing, without repeats")
        return tuple(value)

    def table(self, key: str, required: bool = True) -> "_Table | None":
        self.read.add(key)
        if key not in self.data:
            if required:
                raise self.missing(key, "missing table")
            return None
        return _Table(self.data[key], f"{self.where}.{key}" if self.where else key, self.path)

    def done(self) -> None:
        extra = sorted(set(self.data) - self.read)
        if extra:
            raise self.error(extra[0], f"unknown field; known: {', '.join(sorted(self.read))}")


# --- the preset ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """Prompt and output lengths, the batch sweep, and the model that serves them."""

    model: str
    input_tokens: int
    output_tokens: int
    batches: tuple[int, ...]
    max_model_len: int


@dataclass(frozen=True)
class ConfigurationSpec:
    """One set-up as the file gives it."""

    name: str
    medium: str
    gpus: int
    notes: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class FrequencySweep:
    """SM clocks tried, as ``LO:HI:N`` in MHz (the energy plugin's ``--disagg-dvfs-grid`` form)."""

    grid: str
    apply_to: str          # "both": each point sets one clock on every GPU of the deployment
    batch: int
    scaled_batch: int

    def values_mhz(self) -> tuple[int, ...]:
        return evenly_spaced(*parse_range_spec(self.grid))


@dataclass(frozen=True)
class PresetConfiguration:
    """One configuration for this machine: ``make_config(medium, **overrides)`` builds it."""

    label: str                        # the study's name, kept in ids and reports
    medium: str
    overrides: dict[str, Any]         # DeploymentConfig fields
    scaled: bool
    notes: str
    shared_gpu: bool = False
    gpus_needed: int = 1              # GPUs the configuration uses when run as written

    @property
    def variant(self) -> str:
        return self.overrides.get("variant", "")


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    title: str
    source: str
    prefix_caching: bool
    rate: str
    dataset: str
    shape: Shape
    scaled_shape: Shape
    frequency: FrequencySweep
    metrics: tuple[str, ...]
    energy_components: tuple[str, ...]
    specs: tuple[ConfigurationSpec, ...]
    replicas: Mapping[str, int] = field(default_factory=dict)   # medium -> colocated engines
    warmup: int = 1                   # warm-up batches of the batch's shape before each measured batch

    def configurations(self, device: str, n_gpus: int) -> list[PresetConfiguration]:
        """Every configuration of the preset, adapted to ``device`` and ``n_gpus`` and labelled."""
        scaled = _check_machine(device, n_gpus, self.path)
        shape = self.scaled_shape if scaled else self.shape
        out = []
        for spec in self.specs:
            shared = not scaled and n_gpus < spec.gpus
            overrides: dict[str, Any] = {
                "label": spec.name, "model": shape.model, "max_model_len": shape.max_model_len,
                "prefix_caching": self.prefix_caching,
            }
            overrides.update({k: tuple(v) if isinstance(v, list) else v for k, v in spec.overrides.items()})
            notes = [spec.notes] if spec.notes else []
            if scaled:
                overrides["variant"] = "scaled"
                notes.append(f"scaled for CPU: {shape.model}, {shape.input_tokens} in / "
                             f"{shape.output_tokens} out (as written: {self.shape.input_tokens} / "
                             f"{self.shape.output_tokens} with {self.shape.model})")
                if self.replicas.get(spec.medium, 1) > 1:
                    notes.append(f"data parallel on CPU: {self.replicas[spec.medium]} engines on disjoint "
                                 "core sets, the proxy splitting requests between them")
            elif shared:
                overrides["variant"] = "shared-gpu"
                notes.append(f"needs {spec.gpus} GPUs, {n_gpus} given: its servers share a GPU")
            out.append(PresetConfiguration(label=spec.name, medium=spec.medium, overrides=overrides,
                                           scaled=scaled, notes="; ".join(notes), shared_gpu=shared,
                                           gpus_needed=spec.gpus))
        return out

    def workload(self, device: str, n_gpus: int) -> dict[str, Any]:
        """The workload as plain data (what the load generator's WorkloadSpec takes)."""
        scaled = _check_machine(device, n_gpus, self.path)
        shape = self.scaled_shape if scaled else self.shape
        return {
            "preset": self.name, "scaled": scaled, "model": shape.model, "dataset": self.dataset,
            "input_tokens": shape.input_tokens, "output_tokens": shape.output_tokens,
            "rate": self.rate, "batches": list(shape.batches), "ignore_eos": True, "warmup": self.warmup,
        }

    def frequency_sweep(self, device: str, n_gpus: int) -> dict[str, Any]:
        """The clock grid and the batch it runs at (the scaled batch on CPU, where it is dry-run only)."""
        scaled = _check_machine(device, n_gpus, self.path)
        return {"grid": self.frequency.grid, "values_mhz": list(self.frequency.values_mhz()),
                "apply_to": self.frequency.apply_to,
                "batch": self.frequency.scaled_batch if scaled else self.frequency.batch}

    def describe(self) -> dict[str, Any]:
        """The preset as data, for results JSON."""
        return {"name": self.name, "path": str(self.path), "title": self.title, "source": self.source,
                "configurations": [{"name": s.name, "medium": s.medium, "gpus": s.gpus} for s in self.specs],
                "metrics": list(self.metrics), "energy_components": list(self.energy_components)}


def _check_machine(device: str, n_gpus: int, path: Path) -> bool:
    """True when the preset must run scaled (CPU); raises on a machine description that makes no sense."""
    if device not in ("cpu", "cuda"):
        raise PresetError(f"{path}: device must be 'cpu' or 'cuda', got {device!r}")
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 0:
        raise PresetError(f"{path}: n_gpus must be an int >= 0, got {n_gpus!r}")
    if device == "cuda" and n_gpus == 0:
        raise PresetError(f"{path}: device 'cuda' with no GPU selected")
    return device == "cpu"


# --- loading ------------------------------------------------------------------------------------
def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_path(name_or_path: str) -> Path:
    """A name under fixtures/presets/, or a path to a .toml file."""
    text = str(name_or_path).strip()
    if not text:
        raise PresetError("--disagg-preset: empty value; give a preset name or a path to a .toml file")
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise PresetError(f"--disagg-preset={text!r}: no such file")
        return path
    path = PRESETS_DIR / f"{text}.toml"
    if not path.is_file():
        raise PresetError(f"--disagg-preset={text!r}: unknown preset; known: {', '.join(available_presets()) or 'none'} "
                          f"(files in {PRESETS_DIR}), or give a path to a .toml file")
    return path


def load_preset(name_or_path: str, registry: Iterable[Any] | None = None) -> Preset:
    """Read and check a preset. ``registry`` lists the mediums it may name (default: built-ins)."""
    if registry is None:
        registry = MediumRegistry()
    mediums = {m.name: m for m in registry}
    path = preset_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    root = _Table(data, "", path)
    head = root.table("preset")
    work = root.table("workload")
    freq = root.table("frequency")
    metr = root.table("metrics")
    scal = root.table("scaled")
    root.read.add("configuration")
    raw_specs = data.get("configuration")
    root.done()

    name = head.get("name", (str,), path.stem)
    title = head.get("title", (str,), "")
    source = head.get("source", (str,), "")
    prefix_caching = head.get("prefix_caching", (bool,), False)
    model = head.get("model", (str,))
    head_len = head.positive_int("max_model_len", None)
    head.done()

    rate = work.get("rate", (str,), "inf")
    if rate != "inf":
        raise work.error("rate", f"{rate!r}: presets send every request of a batch at once; only 'inf' is supported")
    warmup = work.get("warmup", (int,), 1)
    if warmup < 0:
        raise work.error("warmup", f"{warmup!r} must be >= 0 (warm-up batches before each measured batch)")
    dataset = work.get("dataset", (str,), "random")
    if dataset != "random":
        raise work.error("dataset", f"{dataset!r}: only 'random' prompts are supported")
    shape = _shape(work, model, head_len, "workload", path)
    work.done()

    scaled_shape = _shape(scal, scal.get("model", (str,)), scal.positive_int("max_model_len", None), "scaled", path)
    scaled_batch = scal.positive_int("frequency_batch", scaled_shape.batches[-1])
    scal.done()

    grid = freq.get("grid_mhz", (str,))
    try:
        parse_range_spec(grid)
    except ValueError as exc:
        raise freq.error("grid_mhz", str(exc)) from None
    apply_to = freq.get("apply_to", (str,), "both")
    if apply_to not in APPLY_TO:
        raise freq.error("apply_to", f"{apply_to!r}; allowed: {', '.join(APPLY_TO)}")
    frequency = FrequencySweep(grid=grid, apply_to=apply_to, batch=freq.positive_int("batch"), scaled_batch=scaled_batch)
    freq.done()

    metrics = tuple(metr.get("report", (list,)))
    for m in metrics:
        problem = _metric_problem(m)
        if problem:
            raise metr.error("report", problem)
    components = tuple(metr.get("energy_components", (list,), ["gpu"]))
    for c in components:
        if c not in ENERGY_COMPONENTS:
            raise metr.error("energy_components", f"unknown component {c!r}; known: {', '.join(sorted(ENERGY_COMPONENTS))}")
    metr.done()

    specs = _specs(raw_specs, mediums, path)
    return Preset(name=name, path=path, title=title, source=source, prefix_caching=prefix_caching, rate=rate,
                  dataset=dataset, shape=shape, scaled_shape=scaled_shape, frequency=frequency, metrics=metrics,
                  energy_components=components, specs=specs, warmup=warmup,
                  replicas={n: getattr(m, "replicas", 1) for n, m in mediums.items()})


def _metric_problem(entry: Any) -> str | None:
    """Why ``entry`` ("ttft_ms:p50", "output_throughput", ...) is not a metric the suite reports."""
    if not isinstance(entry, str):
        return f"{entry!r} is not a metric name"
    name, _, stat = entry.partition(":")
    if name in PRESET_METRICS:
        kind = "run"
    else:
        try:
            kind = describe_metric(name).kind
        except MetricError as exc:
            return f"{entry!r}: {exc}; or one of {', '.join(PRESET_METRICS)}"
    if kind in ("request", "token") and stat not in STATS:
        return f"{entry!r}: a per-request metric needs a statistic, e.g. {name}:p50 ({', '.join(STATS)})"
    if kind == "run" and stat:
        return f"{entry!r}: {name} is one figure per run; drop ':{stat}'"
    return None


def _shape(table: _Table, model: str, max_len: int | None, where: str, path: Path) -> Shape:
    n_in, n_out = table.positive_int("input_tokens"), table.positive_int("output_tokens")
    batches = table.int_list("batches")
    try:
        spec = resolve_model(model)
    except ModelConfigError as exc:
        raise PresetError(f"{path}: {where}: model {model!r}: {exc}") from None
    length = max_len if max_len is not None else n_in + n_out
    if length < n_in + n_out:
        raise PresetError(f"{path}: {where}: max_model_len {length} does not cover {n_in} input + {n_out} output tokens")
    if length > spec.max_position_embeddings:
        raise PresetError(f"{path}: {where}: {length} tokens (max_model_len) exceed model {model}'s "
                          f"max_position_embeddings ({spec.max_position_embeddings})")
    return Shape(model=model, input_tokens=n_in, output_tokens=n_out, batches=batches, max_model_len=length)


def _specs(raw: Any, mediums: Mapping[str, Any], path: Path) -> tuple[ConfigurationSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise PresetError(f"{path}: configuration: give at least one [[configuration]] table")
    specs: list[ConfigurationSpec] = []
    for i, item in enumerate(raw):
        t = _Table(item, f"configuration[{i}]", path)
        name = t.get("name", (str,))
        if not _NAME.match(name):
            raise t.error("name", f"{name!r} must be letters, digits, '.', '_' or '-' (it goes into test ids)")
        if name in {s.name for s in specs}:
            raise t.error("name", f"{name!r} is used twice")
        medium = t.get("medium", (str,))
        if medium not in mediums:
            raise t.error("medium", f"unknown medium {medium!r}; known: {', '.join(mediums)}")
        gpus = t.positive_int("gpus", 1)
        notes = t.get("notes", (str,), "")
        over = t.table("overrides", required=False)
        overrides: dict[str, Any] = {}
        if over is not None:
            for key in over.data:
                if key not in OVERRIDE_TYPES:
                    raise over.error(key, f"not a deployment field a preset may set; allowed: {', '.join(OVERRIDE_TYPES)}")
                overrides[key] = over.get(key, OVERRIDE_TYPES[key])
            if not all(isinstance(a, str) for a in overrides.get("extra_server_args", [])):
                raise over.error("extra_server_args", "must be a list of strings")
        t.done()
        specs.append(ConfigurationSpec(name=name, medium=medium, gpus=gpus, notes=notes, overrides=overrides))
    return tuple(specs)


# --- energy per component ----------------------------------------------------------------------
def energy_per_component(attribution: Any) -> dict[str, dict[str, Any]]:
    """Joules per (input + output) token of each component and its share of the measured total
    (``energy.attribution.components``, the energy record's ``components``)."""
    return components(attribution)
