"""How good is the regression gate? False-alarm rate and power, on real vLLM samples.

A gate is only useful if it fails on real slowdowns and stays quiet otherwise. This benchmark
measures both for ``pytest_disagg.baseline.gate.compare`` on per-request samples from real vLLM
deployments on this machine (``colocated`` and one disaggregated medium, ``nixl-cpu`` by
default), and puts pytest-benchmark's fixed-threshold rule (``--benchmark-compare-fail=median:5%``:
fail when the new median exceeds the old by more than 5 %) beside it on the same data.

Two steps:

1. **collect** (``--collect-to FILE``): for each medium, ``--runs`` runs of a Poisson workload,
   each on a freshly started deployment (``DeploymentPool`` + ``pytest_disagg.load``), and
   ``--delayed-runs`` runs of a deployment whose proxy injects ``+5 %`` of the measured median
   TTFT before decode (``pytest_disagg.testing.faults.delayed``: a real slowdown, applied by the
   proxy to every request), interleaved with the normal ones. Per-request samples are saved as JSON.
2. **statistics** (``--samples FILE``, or right after collecting), repeated ``--reps`` times
   (1,000 by default) at the suite's sample size ``--n`` and over a sweep of sizes:

   - *A/A, pooled*: both sides resampled (with replacement) from all normal runs pooled — the
     textbook no-change case, blind to run-to-run drift;
   - *A/A, across runs*: baseline resampled from one run, current from another (a random ordered
     pair of distinct runs each repetition) — what the suite meets: a baseline recorded one day,
     a run the next. **This is the false-alarm rate reported**;
   - *A/B, +5 % added*: as A/A across runs, with 5 % of the pooled median TTFT added to every
     current-side request's TTFT and E2E (the same constant delay the proxy injects, added to real
     samples). **This is the power reported**: the shift is exactly 5 % and run-to-run drift is
     included;
   - *A/B, proxy +5 %*: baseline from a normal run, current from a run of the proxy-delayed
     deployment — the real injection. Shown with the shift it actually realised: those runs come
     from a freshly started deployment, so their shift is the 5 % plus that deployment's drift.

   Rates are of "regression" verdicts on ``ttft_ms`` (the metric the delay moves); the A/A rows
   also give the rate at which *any* per-request metric (TTFT, TPOT, E2E) would fail a test.
   95 % Wilson intervals show how far the repetitions pin a rate down. A tolerance sweep gives,
   per tolerance, the false alarms, the power and the smallest added shift found with 95 % power;
   a sample-size sweep gives false alarms and power per n at the chosen tolerance.

The last line is exactly ``gate_power_5pct=<x> gate_false_alarm=<y> samples=<n>``: the power and
false-alarm rate at ``n``, the smallest swept sample size at which the gate meets both goals
(power >= 95 %, false alarms <= 1 %) on every medium — or, when no size does, at ``--n``.

Usage::

    python benchmarks/gate_power.py --collect-to gate-samples.json      # real vLLM, then statistics
    python benchmarks/gate_power.py --samples gate-samples.json         # statistics only
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_disagg.baseline import gate  # noqa: E402
from pytest_disagg.baseline.jsonfmt import read_json  # noqa: E402
from pytest_disagg.sweep import SHAPES  # noqa: E402

DEFAULT_N = SHAPES["cpu"]["requests"]     # requests per run of the suite's load sweep (its gated runs)
from pytest_disagg.metrics import CPU_HOST_TOLERANCES, DEFAULT_TOLERANCES  # noqa: E402

SAMPLES_SCHEMA = "pytest-disagg gate-power samples 1"
SHIFT = 0.05                      # the slowdown to detect: +5 % of the median TTFT
GOAL_POWER, GOAL_FALSE_ALARM = 0.95, 0.01
METRIC = "ttft_ms"                # what the injected delay moves
PER_REQUEST = ("ttft_ms", "tpot_ms", "e2el_ms")
SHIFTED = ("ttft_ms", "e2el_ms")  # the delay is before the first token: TTFT and E2E grow by it
DEFAULT_SWEEP = (20, 40, 100, 200, 400, 800, 1600)


class SamplesFileError(ValueError):
    """A samples file this benchmark cannot use; the message names it."""


# --- (a) collection on real deployments -----------------------------------------------------------

# The workload of the measurement: the shape of the suite's latency benchmarks on the tiny CPU
# model, at a rate that loads each medium's servers to roughly a third to a half (colocated serves
# ~27 such requests/s on one core, nixl-cpu ~2.5/s with prefill and decode on one core each).
WORKLOAD = {"arrival": "poisson", "prompt_tokens": 128, "output_tokens": 16, "warmup_requests": 20}
RATES = {"colocated": 8.0, "nixl-cpu": 1.0}
DEFAULT_RATE = 1.0


def collect(out: Path, mediums: list[str], runs: int, delayed_runs: int, requests: int, *,
            max_load: float = 3.0, max_wait_s: float = 3600.0, device: str = "cpu", model: str = "tiny-llama-cpu",
            gpus: tuple[int, ...] = (), rates: dict[str, float] | None = None) -> dict:
    """Real per-request samples per medium, normal and proxy-delayed; written to ``out`` as it goes.

    Every run is a *fresh deployment* (started, warmed up, measured, stopped), as a baseline and a
    later run are in the suite: comparing runs of one long-lived deployment would hide the drift
    between deployments. Two normal runs come first (their median TTFT sets the injected delay),
    then delayed and normal runs alternate, so slow drift of the host hits both sides alike. The
    host's load average is recorded around every run (a busy host shows in the file), and each
    run waits until the 1-minute load average is at most ``max_load``: a shared box measures its
    neighbours otherwise.
    """
    import os

    from pytest_disagg.baseline.fingerprint import machine_info
    from pytest_disagg.children import processes
    from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
    from pytest_disagg.load import WorkloadSpec, fixed, poisson, run_workload
    from pytest_disagg.mediums import MediumRegistry
    from pytest_disagg.testing.faults import delayed_config

    doc = {"schema": SAMPLES_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "collector": "pytest_disagg.load.run_workload; every run on a freshly started deployment",
           "machine": machine_info(), "workload": {**WORKLOAD, "requests": requests}, "mediums": {},
           "device": device, "model": model}
    processes.install_sigterm_handler()      # SIGTERM unwinds through pool.close(): no orphan servers
    pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)

    def spec_for(workload: dict, seed: int) -> WorkloadSpec:
        return WorkloadSpec(arrival=poisson(workload["rate"]), num_requests=workload["requests"],
                            prompt=fixed(workload["prompt_tokens"]), output=fixed(workload["output_tokens"]),
                            warmup=workload["warmup_requests"], seed=seed, name="gate-power")

    seeds = iter(range(1, 10_000))

    def wait_for_idle_host() -> None:
        deadline = time.monotonic() + max_wait_s
        while os.getloadavg()[0] > max_load:
            if time.monotonic() > deadline:
                raise SystemExit(f"the host stayed busy (1-min load {os.getloadavg()[0]:.1f} > {max_load:g}) for "
                                 f"{max_wait_s:.0f} s; what was measured so far is in {out}")
            print(f"waiting for an idle host (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
            time.sleep(30)

    def one_run(config, delay_ms: float, workload: dict) -> dict:
        wait_for_idle_host()
        load_before = os.getloadavg()
        deployment = pool.get(config)
        try:
            t0 = time.monotonic()
            result = run_workload(deployment, spec_for(workload, next(seeds)), progress=False)
            wall = time.monotonic() - t0
        finally:
            pool.release(config)
        samples = result.samples()
        print(f"{config.key()}: median TTFT {np.median(samples[METRIC]):.2f} ms, load {load_before[0]:.1f}",
              file=sys.stderr)
        return {"delay_ms": delay_ms, "wall_s": wall, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                "n_failed": result.n_failed,
                "samples": {k: list(map(float, samples[k])) for k in PER_REQUEST if k in samples},
                "scalars": dict(result.scalars())}

    try:
        for medium in mediums:
            base = dict(medium=medium, model=model, device=device, gpus=tuple(gpus), block_size=32,
                        prefix_caching=False)
            normal = DeploymentConfig(**base)
            rate = (rates or {}).get(medium, RATES.get(medium, DEFAULT_RATE))
            workload = {**WORKLOAD, "requests": requests, "rate": rate}
            entry = {"config": asdict(normal), "workload": workload, "runs": [], "delayed_runs": []}
            doc["mediums"][medium] = entry
            for _ in range(min(2, runs)):
                entry["runs"].append(one_run(normal, 0.0, workload))
            pooled = np.concatenate([r["samples"][METRIC] for r in entry["runs"]])
            entry["injected_delay_ms"] = delay = round(SHIFT * float(np.median(pooled)), 3)
            slowed = delayed_config(pool.registry, DeploymentConfig(**base, variant="slow5pct"), delay)
            for k in range(max(runs - 2, delayed_runs)):
                if k < delayed_runs:
                    entry["delayed_runs"].append(one_run(slowed, delay, workload))
                if len(entry["runs"]) < runs:
                    entry["runs"].append(one_run(normal, 0.0, workload))
                out.write_text(json.dumps(doc))      # keep what is measured even if a later run fails
            out.write_text(json.dumps(doc))
    finally:
        pool.close()
        processes.restore_sigterm_handler()
    return doc


# --- (b) statistics on saved samples --------------------------------------------------------------

def busy_runs(data: dict, max_load: float) -> list[tuple[str, str, int, float]]:
    """Runs during which the host was busy with something else: ``(medium, kind, index, load)``.

    A run's own deployment and client keep the 1-minute load average near 2 on this box; a
    higher figure before or after the run means other work shared the cores, and the run measures
    that contention, not the deployment. The rule is fixed in advance (the collector waits for the
    same threshold before starting a run) rather than chosen by looking at the medians.
    """
    out = []
    for name, entry in data["mediums"].items():
        for kind in ("runs", "delayed_runs"):
            for i, run in enumerate(entry.get(kind) or []):
                loads = [run[k][0] for k in ("loadavg_before", "loadavg_after") if run.get(k)]
                if loads and max(loads) > max_load:
                    out.append((name, kind, i, max(loads)))
    return out


def drop_runs(data: dict, drop: list[tuple[str, str, int, float]]) -> dict:
    gone = {(m, k, i) for m, k, i, _ in drop}
    mediums = {}
    for name, entry in data["mediums"].items():
        kept = dict(entry)
        for kind in ("runs", "delayed_runs"):
            kept[kind] = [r for i, r in enumerate(entry.get(kind) or []) if (name, kind, i) not in gone]
        mediums[name] = kept
    return {**data, "mediums": mediums}


def load_samples(path: Path) -> dict:
    """Read and check a samples file; every problem names the file and what is wrong."""
    return load_samples_checked(read_json(path, SamplesFileError), path)


def combine(docs: list[dict], paths: list[Path]) -> dict:
    """One document with the mediums of several samples files (a medium may appear only once)."""
    out = {**docs[0], "mediums": {}}
    for doc, path in zip(docs, paths):
        for name, entry in doc["mediums"].items():
            if name in out["mediums"]:
                raise SamplesFileError(f"{path}: medium {name!r} is also in an earlier samples file")
            out["mediums"][name] = {**entry, "workload": entry.get("workload") or doc.get("workload"),
                                    "source": str(path)}
    return out


def load_samples_checked(data, path: Path) -> dict:
    if not isinstance(data, dict) or data.get("schema") != SAMPLES_SCHEMA:
        raise SamplesFileError(f"{path}: not a gate-power samples file (schema {SAMPLES_SCHEMA!r})")
    mediums = data.get("mediums")
    if not isinstance(mediums, dict) or not mediums:
        raise SamplesFileError(f"{path}: no mediums")
    for name, entry in mediums.items():
        runs = entry.get("runs")
        if not isinstance(runs, list) or len(runs) < 2:
            raise SamplesFileError(f"{path}: medium {name!r} needs at least 2 normal runs (A/A across runs)")
        for kind in ("runs", "delayed_runs"):
            for i, run in enumerate(entry.get(kind) or []):
                values = run.get("samples", {}).get(METRIC)
                if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    raise SamplesFileError(f"{path}: {name} {kind}[{i}] has no finite {METRIC} samples")
    return data


@dataclass(frozen=True)
class Rate:
    hits: int
    reps: int

    @property
    def value(self) -> float:
        return self.hits / self.reps

    def wilson(self, z: float = 1.96) -> tuple[float, float]:
        n, p = self.reps, self.value
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def text(self) -> str:
        lo, hi = self.wilson()
        return f"{self.value * 100:.1f} % [{lo * 100:.1f}, {hi * 100:.1f}]"


def _draw(rng: np.random.Generator, run: dict, n: int, add_ms: float = 0.0) -> dict[str, np.ndarray]:
    """n requests resampled (with replacement) from one run, each request's metrics kept together;
    ``add_ms`` is added to the metrics a pre-decode delay moves (TTFT, E2E)."""
    samples = run["samples"]
    size = len(samples[METRIC])
    idx = rng.integers(0, size, n)
    out = {}
    for k in PER_REQUEST:
        if k in samples and len(samples[k]) == size:
            values = np.asarray(samples[k], dtype=float)[idx]
            out[k] = values + add_ms if (add_ms and k in SHIFTED) else values
    return out


def _pool(runs: list[dict]) -> dict:
    keys = [k for k in PER_REQUEST if all(k in r["samples"] for r in runs)]
    return {"samples": {k: np.concatenate([np.asarray(r["samples"][k], dtype=float) for r in runs]) for k in keys}}


def pooled_median(entry: dict) -> float:
    return float(np.median(np.concatenate([r["samples"][METRIC] for r in entry["runs"]])))


AA_POOLED, AA_RUNS, AB_ADDED, AB_PROXY = "A/A pooled", "A/A across runs", "A/B +5% added", "A/B proxy +5%"
SCENARIOS = (AA_POOLED, AA_RUNS, AB_ADDED, AB_PROXY)


def scenario_pair(entry: dict, scenario: str, n: int, rng: np.random.Generator, shift: float = SHIFT):
    """One (baseline, current) draw of a scenario; ``shift`` is the added slowdown of AB_ADDED."""
    runs, delayed = entry["runs"], entry.get("delayed_runs") or []
    if scenario == AA_POOLED:
        pooled = entry.setdefault("_pooled", _pool(runs))
        return _draw(rng, pooled, n), _draw(rng, pooled, n)
    i, j = rng.choice(len(runs), size=2, replace=False)
    if scenario == AA_RUNS:
        return _draw(rng, runs[i], n), _draw(rng, runs[j], n)
    if scenario == AB_ADDED:
        return _draw(rng, runs[i], n), _draw(rng, runs[j], n, add_ms=shift * pooled_median(entry))
    if scenario == AB_PROXY:
        return _draw(rng, runs[i], n), _draw(rng, delayed[int(rng.integers(len(delayed)))], n)
    raise ValueError(f"unknown scenario {scenario!r}")


@dataclass
class Draws:
    """The gate's CI (and the plain median ratio) per metric for every repetition of a scenario.

    The CI does not depend on the tolerance, so one set of draws serves every tolerance:
    ``gate.compare`` is ``stats.ratio_of_medians`` followed by ``gate.classify``, and the
    verdicts here come from ``gate.classify`` on the CI that ``gate.compare`` returned.
    """

    ci: dict[str, np.ndarray]       # metric -> (reps, 2)
    ratio: dict[str, np.ndarray]    # metric -> (reps,)

    def gate(self, tolerance: float, metrics: tuple[str, ...] = (METRIC,)) -> Rate:
        hit = np.zeros(len(self.ratio[METRIC]), dtype=bool)
        for m in metrics:
            if m in self.ci:
                hit |= np.array([gate.classify("lower", tolerance, lo, hi) == gate.REGRESSION for lo, hi in self.ci[m]])
        return Rate(int(hit.sum()), hit.size)

    def fixed_rule(self, threshold: float) -> Rate:
        """pytest-benchmark's ``--benchmark-compare-fail=median:X%``: fail if the median grew by more than X."""
        hit = self.ratio[METRIC] > 1.0 + threshold
        return Rate(int(hit.sum()), hit.size)


def simulate(entry: dict, scenario: str, n: int, reps: int, confidence: float, seed: int, *,
             metrics: tuple[str, ...] = PER_REQUEST, shift: float = SHIFT) -> Draws:
    rng = np.random.default_rng(seed)
    ci: dict[str, list] = {}
    ratio: dict[str, list] = {}
    for rep in range(reps):
        base, cur = scenario_pair(entry, scenario, n, rng, shift)
        for m in metrics:
            if m in base and m in cur:
                v = gate.compare(base[m], cur[m], "lower", 0.0, confidence=confidence, seed=seed * 100_003 + rep)
                # no CI (a zero baseline median, too few samples): never a regression
                ci.setdefault(m, []).append(v.ci if v.ci is not None else (math.nan, math.nan))
                ratio.setdefault(m, []).append(v.ratio if v.ratio is not None else math.nan)
    return Draws({m: np.asarray(v) for m, v in ci.items()}, {m: np.asarray(v) for m, v in ratio.items()})


def describe_data(data: dict) -> str:
    rows = []
    for name, entry in data["mediums"].items():
        normal = [float(np.median(r["samples"][METRIC])) for r in entry["runs"]]
        delayed = [float(np.median(r["samples"][METRIC])) for r in entry.get("delayed_runs") or []]
        spread = (max(normal) - min(normal)) / float(np.median(normal))
        rows.append([name, len(entry["runs"]), len(entry["runs"][0]["samples"][METRIC]),
                     " ".join(f"{m:.2f}" for m in normal), f"{spread * 100:.1f} %",
                     f"{entry.get('injected_delay_ms', float('nan')):.3f}", " ".join(f"{m:.2f}" for m in delayed) or "-"])
    return tabulate(rows, headers=["medium", "runs", "requests/run", "TTFT median per run (ms)", "run spread",
                                   "+5 % delay (ms)", "delayed runs' TTFT medians"], tablefmt="simple")


def power_scenario(entry: dict) -> str:
    """The power reported: an exact +5 % shift added to real samples, across runs.

    The proxy-delayed runs come from a freshly started deployment, so their realised shift mixes
    the injected 5 % with run-to-run (and first-run-after-start) drift; they are shown beside it,
    with the shift they actually realised, but do not define "power for a 5 % shift".
    """
    return AB_ADDED


def realised_shift(entry: dict) -> float | None:
    delayed = entry.get("delayed_runs") or []
    if not delayed:
        return None
    slowed = float(np.median(np.concatenate([r["samples"][METRIC] for r in delayed])))
    return slowed / pooled_median(entry) - 1.0


def smallest_detectable(entry: dict, n: int, reps: int, confidence: float, seed: int, tolerances: tuple[float, ...],
                        shifts: tuple[float, ...]) -> dict[float, float | None]:
    """Per tolerance: the smallest added TTFT shift the gate flags with >= 95 % power (across runs)."""
    draws = {s: simulate(entry, AB_ADDED, n, reps, confidence, seed, metrics=(METRIC,), shift=s) for s in shifts}
    return {t: next((s for s in shifts if draws[s].gate(t).value >= GOAL_POWER), None) for t in tolerances}


def statistics(data: dict, *, n: int, reps: int, sweep: tuple[int, ...], tolerance: float, confidence: float,
               seed: int, tolerances: tuple[float, ...], shifts: tuple[float, ...]) -> tuple[float, float, int]:
    mediums = data["mediums"]
    fixed = tuple(sorted({0.05, tolerance}))
    print(f"samples: {data.get('collector', '?')}; created {data.get('created', '?')}")
    for name, entry in mediums.items():
        print(f"{name}: workload {json.dumps(entry.get('workload') or data.get('workload', {}), sort_keys=True)}")
    print()
    print(describe_data(data))
    print(f"\ngate: tolerance {tolerance * 100:g} %, confidence {confidence:g}, {reps} repetitions per cell, "
          f"n = {n} requests per side (resampled with replacement)\n")

    rows, at_n = [], {}
    for name, entry in mediums.items():
        for scenario in SCENARIOS:
            if scenario == AB_PROXY and not entry.get("delayed_runs"):
                continue
            draws = simulate(entry, scenario, n, reps, confidence, seed)
            at_n[(name, scenario)] = draws
            any_metric = draws.gate(tolerance, PER_REQUEST).text() if scenario.startswith("A/A") else "-"
            label = scenario
            if scenario == AB_PROXY:
                label += f" (realised {realised_shift(entry) * 100:+.1f} %)"
            rows.append([name, label, draws.gate(tolerance).text(), any_metric]
                        + [draws.fixed_rule(t).text() for t in fixed])
    print(tabulate(rows, headers=["medium", "scenario", f"gate: {METRIC} regression", "gate: any metric"]
                   + [f"median:{t * 100:g}% rule" for t in fixed], tablefmt="simple"))
    print("\nA/A rows are false alarms (goal <= 1 %); A/B rows are detection power (goal >= 95 %).")
    for name, entry in mediums.items():
        k = len(entry["runs"])
        print(f"{name}: 'across runs' rests on {k} runs ({k * (k - 1)} ordered pairs); one unusual run moves it "
              f"by up to {2 / k * 100:.0f} points, more than the repetitions' Wilson interval shows.")
    print()

    tol_rows = []
    for name, entry in mediums.items():
        detectable = smallest_detectable(entry, n, reps, confidence, seed, tolerances, shifts)
        for t in tolerances:
            mds = detectable[t]
            proxy = at_n.get((name, AB_PROXY))
            tol_rows.append([name, f"{t * 100:g} %", at_n[(name, AA_RUNS)].gate(t).text(),
                             at_n[(name, AA_RUNS)].gate(t, PER_REQUEST).text(),
                             at_n[(name, AB_ADDED)].gate(t).text(), proxy.gate(t).text() if proxy else "-",
                             f"{mds * 100:g} %" if mds is not None else f"> {shifts[-1] * 100:g} %"])
    print(f"tolerance sweep at n = {n} (across runs):")
    print(tabulate(tol_rows, headers=["medium", "tolerance", "false alarm (ttft)", "false alarm (any metric)",
                                      "power (+5 % added)", "power (proxy runs)", "shift found with 95 %"],
                   tablefmt="simple"))

    sweep_rows, results = [], {}
    for size in sweep:
        fa, pw = [], []
        for name, entry in mediums.items():
            aa = simulate(entry, AA_RUNS, size, reps, confidence, seed, metrics=(METRIC,)).gate(tolerance)
            ab = simulate(entry, power_scenario(entry), size, reps, confidence, seed, metrics=(METRIC,)).gate(tolerance)
            fa.append(aa.value)
            pw.append(ab.value)
            sweep_rows.append([size, name, aa.text(), ab.text(), power_scenario(entry)])
        results[size] = (max(fa), min(pw))
    print(f"\nsample-size sweep at tolerance {tolerance * 100:g} %:")
    print(tabulate(sweep_rows, headers=["n", "medium", "false alarm (A/A across runs)", "power (5 %)", "power from"],
                   tablefmt="simple"))
    meeting = [size for size in sweep if results[size][0] <= GOAL_FALSE_ALARM and results[size][1] >= GOAL_POWER]
    if meeting:
        print(f"\nsmallest n meeting both goals on every medium: {meeting[0]}")
        return results[meeting[0]][1], results[meeting[0]][0], meeting[0]
    print(f"\nno n in {list(sweep)} meets both goals on every medium at tolerance {tolerance * 100:g} %; "
          f"the figures below are at the suite's n = {n}")
    fa = max(at_n[(name, AA_RUNS)].gate(tolerance).value for name in mediums)
    pw = min(at_n[(name, power_scenario(e))].gate(tolerance).value for name, e in mediums.items())
    return pw, fa, n


def _fraction(text: str) -> float:
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", type=Path, nargs="+", help="statistics from saved samples file(s); mediums of "
                                                              "several files are combined")
    src.add_argument("--collect-to", type=Path, help="collect real samples into this file, then run the statistics")
    ap.add_argument("--mediums", default="colocated,nixl-cpu", help="collect: mediums (default colocated,nixl-cpu)")
    ap.add_argument("--max-wait-s", type=float, default=3600.0,
                    help="collect: how long to wait for the host to be idle (load below --max-load) before each run")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="collect: where the servers run (default cpu; cuda needs --gpus and a GPU --model)")
    ap.add_argument("--model", default=None, help="collect: model fixture (default tiny-llama-cpu / tiny-llama-gpu)")
    ap.add_argument("--gpus", default="", help="collect, cuda: GPU indices, e.g. 0 or 0,1 (a 2-GPU medium needs 2)")
    ap.add_argument("--rates", default="", help="collect: request rate per medium, e.g. colocated=8,nixl-gpu=2 "
                                                "(default: the CPU rates in RATES)")
    ap.add_argument("--runs", type=int, default=5, help="collect: normal runs per medium (default 5)")
    ap.add_argument("--delayed-runs", type=int, default=3, help="collect: proxy-delayed runs per medium (default 3)")
    ap.add_argument("--requests", type=int, default=200,
                    help="collect: measured requests per run (default 200; more than --n so that resampling "
                         "draws from a run's whole distribution)")
    ap.add_argument("--n", type=int, default=DEFAULT_N,
                    help=f"requests per side in the statistics (default {DEFAULT_N}: the suite's load-sweep runs)")
    ap.add_argument("--reps", type=int, default=1000, help="repetitions per cell (default 1000)")
    ap.add_argument("--sweep", default=",".join(map(str, DEFAULT_SWEEP)), help="sample sizes to sweep")
    ap.add_argument("--tolerance", type=_fraction, default=None,
                    help=f"gate tolerance (default: the suite's latency default for the host: CPU "
                         f"{CPU_HOST_TOLERANCES['latency'] * 100:g}%%, GPU {DEFAULT_TOLERANCES['latency'] * 100:g}%%)")
    ap.add_argument("--confidence", type=_fraction, default=gate.DEFAULT_CONFIDENCE)
    ap.add_argument("--tolerances", default="1%,2%,3%,5%,8%,10%,15%", help="tolerances to sweep at --n")
    ap.add_argument("--shifts", default="5%,10%,15%,20%,30%,50%",
                    help="added TTFT shifts for the smallest shift detected with 95 %% power")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-load", type=float, default=3.0,
                    help="leave out runs with a 1-minute load average above this before or after them (default 3)")
    args = ap.parse_args(argv)
    sweep = tuple(int(s) for s in args.sweep.split(",") if s.strip())
    try:
        gpus = tuple(int(g) for g in args.gpus.split(",") if g.strip())
        rates = {k.strip(): float(v) for k, _, v in (p.partition("=") for p in args.rates.split(",") if p.strip())}
    except ValueError:
        ap.error(f"--gpus {args.gpus!r} / --rates {args.rates!r}: give e.g. --gpus 0,1 --rates colocated=8,nixl-gpu=2")
    if args.device == "cuda" and not gpus:
        ap.error("--device cuda needs --gpus (e.g. --gpus 0)")
    if any(r <= 0 for r in rates.values()):
        ap.error(f"--rates {args.rates!r}: every rate must be > 0")
    if args.collect_to:
        collect(args.collect_to, [m.strip() for m in args.mediums.split(",")], args.runs, args.delayed_runs,
                args.requests, max_load=args.max_load, max_wait_s=args.max_wait_s, device=args.device,
                model=args.model or ("tiny-llama-gpu" if args.device == "cuda" else "tiny-llama-cpu"), gpus=gpus,
                rates=rates)
        paths = [args.collect_to]
    else:
        paths = args.samples
    try:
        data = combine([load_samples(p) for p in paths], paths)
        path = paths[0]
        busy = busy_runs(data, args.max_load)
        for medium, kind, i, load in busy:
            print(f"excluded: {medium} {kind}[{i}] (1-min load average {load:.2f} > {args.max_load:g})")
        data = load_samples_checked(drop_runs(data, busy), path)
    except SamplesFileError as exc:
        print(f"gate_power: {exc}", file=sys.stderr)
        return 2
    if args.tolerance is None:      # the suite's default for the host the samples came from
        on_gpu = data.get("device") == "cuda" or bool((data.get("machine") or {}).get("gpu_count"))
        args.tolerance = (DEFAULT_TOLERANCES if on_gpu else CPU_HOST_TOLERANCES)["latency"]
    power, false_alarm, n = statistics(
        data, n=args.n, reps=args.reps, sweep=sweep, tolerance=args.tolerance, confidence=args.confidence,
        seed=args.seed, tolerances=tuple(_fraction(t) for t in args.tolerances.split(",") if t.strip()),
        shifts=tuple(_fraction(t) for t in args.shifts.split(",") if t.strip()))
    print(f"gate_power_5pct={power:.3f} gate_false_alarm={false_alarm:.3f} samples={n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
