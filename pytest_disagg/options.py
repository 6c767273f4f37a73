"""The core's option table, and command-line/ini values → one validated ``DisaggOptions``.

Every option of the suite is an ``Option`` row (``optionspec.py``) in some package's ``OPTIONS``
table (this module's for the core; ``ab/options.py``, and the ``pytest_plugin`` modules of energy/,
baseline/, load/, export/, deploy/ for theirs), registered by the one call ``add_options``, so each
has the same flag, ini twin, help and default in ``pytest --help``, in ini files and in README's
option table (``python -m pytest_disagg.optiondoc`` writes it; a test fails when it differs).
Adding an option is one row. The value rules sit here, unit-testable without running pytest; each
error names the option and the allowed values.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .deploy.launchers import LAUNCHERS
from .deploy.pool import WEIGHTS
from .kvspec import validate_kv_cache_dtype
from .mediums import Medium, MediumRegistry
from .models import ModelConfigError, available_models, resolve_model
from .optionspec import Option, add_options, option_value, raw_values

DEVICES = ("auto", "cpu", "cuda")
PREFIX_CACHING = ("both", "on", "off")


class OptionError(ValueError):
    """A bad option value; the plugin turns it into a pytest usage error."""


OPTIONS = (
    Option("--disagg-gpus", "disagg_gpus", "GPU indices, e.g. 0,1: prefill on the first half, decode on the "
           "second; one GPU: both share it (memory split); none: CPU", metavar="I,J"),
    Option("--disagg-device", "disagg_device", "auto, cpu or cuda (auto: cuda when --disagg-gpus is given)", "auto",
           metavar="{auto,cpu,cuda}"),
    Option("--disagg-mediums", "disagg_mediums", "comma-separated mediums (default: all; unavailable ones are "
           "skipped with the reason)", metavar="A,B"),
    Option("--disagg-model", "disagg_model", "model config: a name under fixtures/models or a path to a "
           "config.json (weights: see --disagg-weights; the equality property builds a real checkpoint of it)", metavar="NAME|PATH"),
    Option("--disagg-server-timeout", "disagg_server_timeout", "seconds a vLLM server may take to become healthy",
           "600", metavar="S"),
    Option("--disagg-logs", "disagg_logs", "directory where server and proxy logs are kept", metavar="DIR"),
    Option("--disagg-prefix-caching", "disagg_prefix_caching", "both, on or off: prefix caching of the "
           "deployments", "both", metavar="{both,on,off}"),
    Option("--disagg-max-live", "disagg_max_live", "deployments kept running at once (least recently used are "
           "stopped)", "1", metavar="N"),
    Option("--disagg-preset", "disagg_preset", "a preset of set-ups and workloads (e.g. paper)",
           metavar="NAME|PATH"),
    Option("--disagg-json", "disagg_json", "write every run's results (config, fingerprint, metrics, energy, "
           "verdicts) here", metavar="PATH"),
    Option("--disagg-kv-cache-dtype", "disagg_kv_cache_dtype", "vLLM's --kv-cache-dtype for every server "
           "(auto, float32, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2); sizes the self-check's bytes/token and, "
           "when not auto, enters the baseline fingerprint's subject", "auto", metavar="DTYPE"),
    Option("--disagg-equality-models", "disagg_equality_models", "further model configs (names or paths, "
           "comma-separated, or none) the greedy-equality property runs on, with real checkpoints (default on "
           "CPU: tiny-qwen3-cpu, on GPU: none)", metavar="A,B"),
    Option("--disagg-launcher", "disagg_launcher", "where servers run: local (children of pytest) or ray (Ray "
           "actors, prefill and decode on different nodes when the cluster has them)", "local",
           metavar="{local,ray}"),
    Option("--disagg-ray-address", "disagg_ray_address", "Ray cluster for --disagg-launcher=ray: auto or "
           "HOST:PORT", "auto", metavar="auto|HOST:PORT"),
    Option("--disagg-ray-resource", "disagg_ray_resource", "a custom Ray resource every server's node must have (e.g. "
           "the nodes you label for the suite)",
           metavar="NAME"),
    Option("--disagg-eager", "disagg_eager", "serve with vLLM's --enforce-eager: auto (the device's policy: eager "
           "on CPU, CUDA graphs and compilation on GPUs, as production serves), yes or no; the mode enters the "
           "fingerprint and the baseline key", "auto", choices=("auto", "yes", "no")),
    Option("--disagg-weights", "disagg_weights", "dummy (vLLM's --load-format dummy) or checkpoint (a real "
           "checkpoint of the model config, seeded random weights built once and cached: the output depends on the "
           "whole prompt); checkpoint enters the baseline key", "dummy", choices=WEIGHTS),
    Option("--disagg-attach", "disagg_attach", "TOML file describing a deployment managed elsewhere (llm-d, "
           "Dynamo, a vLLM you started): the suite starts nothing and drives, measures and gates that one",
           metavar="FILE"),
    Option("--disagg-save", "disagg_save", "keep a session that recorded runs as .disagg/runs/<id>/results.json "
           "(the --disagg-json document) for `pytest-disagg compare`; no: keep nothing", "yes",
           choices=("yes", "no")),
    Option("--disagg-save-dir", "disagg_save_dir", "where --disagg-save keeps runs (default: .disagg/runs in "
           "the rootdir)", metavar="DIR"),
)


@dataclass(frozen=True)
class DisaggOptions:
    gpus: tuple[int, ...]
    device: str                          # resolved: "cpu" | "cuda"
    mediums: tuple[Medium, ...] | None   # resolved once, by build_options; None: every registered medium
    model: str
    server_timeout_s: float
    logs_dir: Path | None
    prefix_caching: tuple[bool, ...]
    max_live: int
    preset: str | None = None
    json_path: Path | None = None
    kv_cache_dtype: str = "auto"         # vLLM's --kv-cache-dtype for every server
    equality_models: tuple[str, ...] = ()  # further architectures the equality property runs on
    launcher: str = "local"
    ray_address: str = "auto"
    ray_resource: str | None = None
    attach: Path | None = None           # a deployment managed elsewhere (attach/)
    eager: bool | None = None            # --enforce-eager; None: the device's policy (devices.py)
    weights: str = "dummy"               # deploy.pool.WEIGHTS
    save: bool = True                    # keep the session's results as a run (runs.py)
    save_dir: Path | None = None         # where; None: .disagg/runs in the rootdir

    @property
    def default_model(self) -> bool:
        return self.model == ""

    @property
    def medium_names(self) -> tuple[str, ...] | None:
        """``--disagg-mediums`` as names (the results JSON's, a preset's configurations' and configs' key)."""
        return None if self.mediums is None else tuple(m.name for m in self.mediums)


def parse_gpus(value: str | None, visible: int) -> tuple[int, ...]:
    if value is None or value.strip() == "":
        return ()
    items = [v.strip() for v in value.split(",")]
    out: list[int] = []
    for item in items:
        if not item.isdigit():
            raise OptionError(f"--disagg-gpus={value!r}: {item!r} is not a GPU index; give indices like 0,1")
        out.append(int(item))
    dupes = sorted({i for i in out if out.count(i) > 1})
    if dupes:
        raise OptionError(f"--disagg-gpus={value!r}: GPU {dupes[0]} is listed twice; each GPU once (e.g. 0,1)")
    past = [i for i in out if i >= visible]
    if past:
        seen = f"indices 0..{visible - 1}" if visible else "no GPU at all"
        raise OptionError(f"--disagg-gpus={value!r}: GPU {past[0]} is not visible (this machine shows {seen})")
    return tuple(out)


def parse_device(value: str | None, gpus: tuple[int, ...], visible: int) -> str:
    value = (value or "auto").strip()
    if value not in DEVICES:
        raise OptionError(f"--disagg-device={value!r}: allowed values are {', '.join(DEVICES)}")
    if value == "auto":
        return "cuda" if gpus else "cpu"
    if value == "cuda":
        if not visible:
            raise OptionError("--disagg-device=cuda: no GPU is visible on this machine")
        return "cuda"
    if gpus:
        raise OptionError(f"--disagg-device=cpu contradicts --disagg-gpus={','.join(map(str, gpus))}")
    return "cpu"


def parse_mediums(value: str | None, registry: MediumRegistry) -> tuple[Medium, ...] | None:
    """The one place an option's medium names become ``Medium`` objects: the parametrization and the
    availability checks use these, and never look a name up again."""
    if value is None or value.strip() in ("", "all"):
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in registry.names()]
    if unknown:
        raise OptionError(f"--disagg-mediums: unknown medium {unknown[0]!r}; known: {', '.join(registry.names())}")
    return tuple(registry.get(n) for n in names)


def parse_model(value: str | None, device: str) -> str:
    model = (value or "").strip() or ("tiny-llama-cpu" if device == "cpu" else "tiny-llama-gpu")
    try:
        resolve_model(model)
    except ModelConfigError as exc:
        raise OptionError(f"--disagg-model={model!r}: {exc}") from None
    return model


def parse_positive(value, option: str, cast=float):
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise OptionError(f"{option}={value!r}: not a number") from None
    if number <= 0:
        raise OptionError(f"{option}={value!r}: must be greater than 0")
    return number


def parse_prefix_caching(value: str | None) -> tuple[bool, ...]:
    value = (value or "both").strip()
    if value not in PREFIX_CACHING:
        raise OptionError(f"--disagg-prefix-caching={value!r}: allowed values are {', '.join(PREFIX_CACHING)}")
    return {"both": (False, True), "on": (True,), "off": (False,)}[value]


def parse_kv_cache_dtype(value: str | None) -> str:
    try:
        return validate_kv_cache_dtype(value)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def parse_equality_models(value: str | None, device: str) -> tuple[str, ...]:
    """Model configs (names or paths) the equality property also runs on; ``none`` for none.
    Default: one non-Llama architecture on CPU (the CI budget), none on GPU."""
    if value is None or not value.strip():
        return ("tiny-qwen3-cpu",) if device == "cpu" else ()
    if value.strip() == "none":
        return ()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        try:
            resolve_model(name)
        except ModelConfigError as exc:
            raise OptionError(f"--disagg-equality-models: {name!r}: {exc}") from None
    return names
def parse_launcher(value: str | None) -> str:
    value = (value or "local").strip()
    if value not in LAUNCHERS:
        raise OptionError(f"--disagg-launcher={value!r}: allowed values are {', '.join(LAUNCHERS)}")
    return value


def parse_ray_address(value: str | None, launcher: str) -> str:
    value = (value or "auto").strip()
    if value != "auto":
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise OptionError(f"--disagg-ray-address={value!r}: give auto or HOST:PORT (e.g. 127.0.0.1:6379)")
        if launcher != "ray":
            raise OptionError(f"--disagg-ray-address={value!r} needs --disagg-launcher=ray")
    return value


def parse_output_file(value: str | None, option: str) -> Path | None:
    """A file the session writes at its end, checked at its start: a directory there would
    otherwise fail only after every benchmark had run."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise OptionError(f"{option}={value!r}: is a directory; give a file name")
    return path


def parse_attach(value: str | None, launcher: str) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise OptionError(f"--disagg-attach={value!r}: no such file")
    if launcher != "local":
        raise OptionError(f"--disagg-attach={value!r}: an attached deployment starts nothing; "
                          f"drop --disagg-launcher={launcher}")
    return path


EAGER = {"auto": None, "yes": True, "no": False}


def parse_eager(value: str | None) -> bool | None:
    value = (value or "auto").strip()
    if value not in EAGER:
        raise OptionError(f"--disagg-eager={value!r}: allowed values are {', '.join(EAGER)}")
    return EAGER[value]


def parse_weights(value: str | None) -> str:
    value = (value or "dummy").strip()
    if value not in WEIGHTS:
        raise OptionError(f"--disagg-weights={value!r}: allowed values are {', '.join(WEIGHTS)}")
    return value


SAVE = {"yes": True, "no": False}


def parse_save(value: str | None) -> bool:
    value = (value or "yes").strip()
    if value not in SAVE:
        raise OptionError(f"--disagg-save={value!r}: allowed values are {', '.join(SAVE)}")
    return SAVE[value]


def parse_save_dir(value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise OptionError(f"--disagg-save-dir={value!r}: is a file; give a directory")
    return path


def build_options(raw: dict, registry: MediumRegistry, visible_gpus: int) -> DisaggOptions:
    """``raw`` maps option names (without the ``--disagg-`` prefix) to strings or None."""
    gpus = parse_gpus(raw.get("gpus"), visible_gpus)
    device = parse_device(raw.get("device"), gpus, visible_gpus)
    if device == "cuda" and not gpus:
        gpus = (0,)
    logs = raw.get("logs")
    return DisaggOptions(
        gpus=gpus,
        device=device,
        mediums=parse_mediums(raw.get("mediums"), registry),
        model=parse_model(raw.get("model"), device),
        server_timeout_s=parse_positive(raw.get("server_timeout") or 600, "--disagg-server-timeout"),
        logs_dir=Path(logs) if logs else None,
        prefix_caching=parse_prefix_caching(raw.get("prefix_caching")),
        max_live=parse_positive(raw.get("max_live") or 1, "--disagg-max-live", int),
        preset=(raw.get("preset") or None),
        json_path=parse_output_file(raw.get("json"), "--disagg-json"),
        kv_cache_dtype=parse_kv_cache_dtype(raw.get("kv_cache_dtype")),
        equality_models=parse_equality_models(raw.get("equality_models"), device),
        launcher=(launcher := parse_launcher(raw.get("launcher"))),
        ray_address=parse_ray_address(raw.get("ray_address"), launcher),
        ray_resource=(raw.get("ray_resource") or None),
        attach=parse_attach(raw.get("attach"), launcher),
        eager=parse_eager(raw.get("eager")),
        weights=parse_weights(raw.get("weights")),
        save=parse_save(raw.get("save")),
        save_dir=parse_save_dir(raw.get("save_dir")),
    )


__all__ = ["OPTIONS", "DisaggOptions", "Option", "OptionError", "add_options", "available_models", "build_options",
           "option_value", "raw_values"]
