"""Attach mode: drive, measure and gate a deployment that something else manages (llm-d, NVIDIA
Dynamo, vLLM production-stack, a server you started yourself). The suite starts nothing.

``--disagg-attach=FILE`` names a TOML file::

    name = "llmd-pd"                               # the deployment's key in results and baselines
    medium = "nixl-rdma"                           # a label: what moves the KV there
    url = "http://10.0.0.5:8000"                   # the OpenAI endpoint the client sends to
    model = "meta-llama/Llama-3.1-8B-Instruct"     # optional: asked of {url}/v1/models when absent
    vocab_size = 128256                            # optional: prompt token ids are drawn below it (1000)
    dcgm = "http://10.0.0.5:9400/metrics"          # optional: DCGM-exporter(s), str or list
    [roles.prefill]
    metrics = "http://10.0.0.6:8000/metrics"       # each role's vLLM /metrics
    gpus = [0]                                     # optional: its GPUs as DCGM numbers them
    [roles.decode]
    metrics = "http://10.0.0.7:8000/metrics"

An :class:`AttachedDeployment` has what the runner, the results and the gate read of a
deployment (``url``, ``model_name``, ``servers`` with ``role`` and ``metrics_url()``, ``config``,
``medium.describe()``...). Errors name the file and the key.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .dcgm import DcgmMeter

ROLES = ("prefill", "decode", "colocated")
KEYS = {"name", "medium", "url", "model", "vocab_size", "dcgm", "roles"}
DEFAULT_VOCAB = 1000     # prompts are token ids below this unless vocab_size says more (any real tokenizer has them)
ROLE_KEYS = {"metrics", "gpus"}


class AttachError(ValueError):
    """A bad attach file: the message names the file and the key."""


@dataclass(frozen=True)
class AttachConfig:
    """The attached deployment's configuration, as results and the gate see a ``DeploymentConfig``."""

    medium: str
    name: str
    url: str
    model: str
    roles: tuple[tuple[str, str, tuple[int, ...]], ...]      # (role, metrics URL, gpus)
    dcgm: tuple[str, ...] = ()
    vocab_size: int = DEFAULT_VOCAB
    label: str | None = None
    prefix_caching: bool | None = None       # unknown: managed elsewhere
    device: str = "attached"
    variant: str = ""

    def key(self) -> str:
        return self.name

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def _url(path: Path, key: str, value) -> str:
    if not isinstance(value, str):
        raise AttachError(f"{path}: key {key!r}: expected a URL string, got {value!r}")
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise AttachError(f"{path}: key {key!r}: {value!r} is not an http(s) URL with a host")
    try:
        parsed.port
    except ValueError:
        raise AttachError(f"{path}: key {key!r}: {value!r} has a bad port") from None
    return value.rstrip("/")


def _text(path: Path, doc: dict, key: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AttachError(f"{path}: key {key!r}: " + ("missing" if value is None else f"expected a non-empty string, got {value!r}"))
    return value.strip()


def load_attach(path, *, fetch_model=None) -> AttachConfig:
    """Read and check an attach file. ``fetch_model(url)`` names the served model when ``model`` is absent."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise AttachError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AttachError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise AttachError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(KEYS))}")
    name, medium = _text(path, doc, "name"), _text(path, doc, "medium")
    url = _url(path, "url", doc.get("url"))
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    roles_doc = doc.get("roles")
    if not isinstance(roles_doc, dict) or not roles_doc:
        raise AttachError(f"{path}: key 'roles': missing; give [roles.prefill] and [roles.decode] "
                          "(or [roles.colocated]) each with metrics = URL")
    roles = []
    for role, spec in roles_doc.items():
        key = f"roles.{role}"
        if role not in ROLES:
            raise AttachError(f"{path}: key {key!r}: unknown role; known: {', '.join(ROLES)}")
        if not isinstance(spec, dict):
            raise AttachError(f"{path}: key {key!r}: expected a table with metrics = URL")
        bad = sorted(set(spec) - ROLE_KEYS)
        if bad:
            raise AttachError(f"{path}: key '{key}.{bad[0]}': unknown; known: {', '.join(sorted(ROLE_KEYS))}")
        metrics = _url(path, f"{key}.metrics", spec.get("metrics"))
        gpus = spec.get("gpus", [])
        if not isinstance(gpus, list) or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0
                                                 for g in gpus):
            raise AttachError(f"{path}: key '{key}.gpus': expected a list of GPU numbers, got {gpus!r}")
        roles.append((role, metrics, tuple(gpus)))
    names = {r for r, _, _ in roles}
    if "colocated" not in names and names != {"prefill", "decode"}:
        raise AttachError(f"{path}: key 'roles': need both prefill and decode (or colocated), got {sorted(names)}")
    dcgm = doc.get("dcgm", ())
    dcgm = (dcgm,) if isinstance(dcgm, str) else dcgm
    if not isinstance(dcgm, (list, tuple)):
        raise AttachError(f"{path}: key 'dcgm': expected a URL or a list of URLs, got {dcgm!r}")
    dcgm = tuple(_url(path, f"dcgm[{i}]", u) for i, u in enumerate(dcgm))
    vocab = doc.get("vocab_size", DEFAULT_VOCAB)
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
        raise AttachError(f"{path}: key 'vocab_size': expected an integer >= 2, got {vocab!r}")
    model = _text(path, doc, "model", required=False)
    if model is None:
        try:
            model = (fetch_model or served_model)(url)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise AttachError(f"{path}: key 'model' is absent and {url}/v1/models did not name one ({exc})") from None
    return AttachConfig(medium=medium, name=name, url=url, model=model, roles=tuple(roles), dcgm=dcgm,
                        vocab_size=vocab)


def served_model(url: str) -> str:
    with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
        return json.loads(resp.read())["data"][0]["id"]


@dataclass(frozen=True)
class AttachedServer:
    """One role's server, known only by its /metrics URL."""

    role: str
    metrics: str
    gpu_indices: tuple[int, ...] = ()
    pid: int | None = None
    device: str = "attached"
    log_path: str = ""
    cmdline: tuple[str, ...] = ()
    startup_s: float = 0.0
    node: str | None = None

    @property
    def url(self) -> str:
        return self.metrics[: -len("/metrics")] if self.metrics.endswith("/metrics") else self.metrics

    def metrics_url(self) -> str:
        return self.metrics

    def scrape_metrics(self, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.metrics, timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {"role": self.role, "metrics_url": self.metrics, "gpu_indices": list(self.gpu_indices),
                "device": self.device}


@dataclass(frozen=True)
class AttachedMedium:
    """The medium label; nothing to set up (the deployment is someone else's)."""

    name: str
    disaggregated: bool
    handoff: str = "external"

    def describe(self) -> dict:
        return {"name": self.name, "attached": True, "disaggregated": self.disaggregated}

    def roles(self) -> tuple[str, ...]:
        return ("prefill", "decode") if self.disaggregated else ("colocated",)


@dataclass(frozen=True)
class AttachedModel:
    name: str
    vocab_size: int
    config_sha256: str | None = None      # unknown: the model config is not ours to read


@dataclass
class AttachedDeployment:
    """A deployment managed elsewhere, as tests, the runner, results and the gate see one."""

    config: AttachConfig
    servers: tuple[AttachedServer, ...] = field(default=())
    startup_s: float = 0.0
    selfcheck: dict | None = None
    dtype: str = "unknown"
    kv_bytes_per_token: int | None = None
    services: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.servers:
            self.servers = tuple(AttachedServer(role=r, metrics=m, gpu_indices=g) for r, m, g in self.config.roles)
        self.medium = AttachedMedium(self.config.medium, disaggregated="colocated" not in
                                     {s.role for s in self.servers})
        self.model = AttachedModel(self.config.model, self.config.vocab_size)

    key = property(lambda self: self.config.name)
    url = property(lambda self: self.config.url)
    model_name = property(lambda self: self.config.model)

    @property
    def prefill(self):
        return tuple(s for s in self.servers if s.role == "prefill")

    @property
    def decode(self):
        return tuple(s for s in self.servers if s.role in ("decode", "colocated"))

    def to_json(self) -> dict:
        return {"key": self.key, "attached": True, "medium": self.medium.describe(), "config": asdict(self.config),
                "url": self.url, "servers": [s.to_json() for s in self.servers], "model": self.model_name,
                "dcgm": list(self.config.dcgm)}


def attach(config: AttachConfig, timeout_s: float = 10.0) -> AttachedDeployment:
    """Check that every URL answers (the endpoint's /v1/models, every role's /metrics), then the deployment."""
    problems = []
    for what, url in [("url", config.url + "/v1/models")] + [(f"roles.{r}.metrics", m) for r, m, _ in config.roles]:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                resp.read(1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{what}: {url} does not answer ({getattr(exc, 'reason', exc)})")
    if problems:
        raise AttachError(f"attached deployment {config.name!r}: " + "; ".join(problems))
    if config.dcgm and not any(g for _, _, g in config.roles):
        # No GPUs named per role: every GPU the exporters show serves every role (shared).
        gpus = DcgmMeter(config.dcgm).gpus()
        return AttachedDeployment(config, servers=tuple(AttachedServer(role=r, metrics=m, gpu_indices=gpus)
                                                        for r, m, _ in config.roles))
    return AttachedDeployment(config)


__all__ = ["AttachConfig", "AttachError", "AttachedDeployment", "attach", "load_attach"]
