"""How good is the A/B verdict? False-alarm rate and power of ``--disagg-ab``, on real vLLM rounds.

``pytest --disagg-ab=...`` runs a benchmark's workload on side A and side B in interleaved rounds
and decides per metric with ``pytest_disagg.ab.decide`` (Pinpoint-style: a paired signed-rank
test over the rounds' B/A, an equivalence band for "same", more rounds while undecided). This benchmark
measures how often that rule is wrong, on rounds measured on real deployments of this machine.

1. **collect** (no arguments, or ``--collect-to FILE``): per medium (``colocated`` and
   ``nixl-cpu``) a few *sessions*; each session starts three deployments and keeps them alive:
   ``A1`` and ``A2`` (the same software, started separately: an A/A pair, start-to-start drift
   included) and ``B`` (the same software, its proxy delaying every request by +5 % of the median
   TTFT measured on ``A1`` first: ``pytest_disagg.testing.faults.delayed``, a real slowdown).
   Rounds run the three in rotating order (A1 A2 B, A2 B A1, B A1 A2, ...), one workload run each.
   Every round's per-request samples are saved, so the same file also says how much median TTFT
   moves between rounds of one deployment and between deployments (the drift question that decides
   whether A/B needs fresh deployments per round). ``--fresh`` starts the three anew every round,
   as ``--disagg-ab-fresh=yes`` (the plugin's default) does; ``--runs-per-round N`` runs each side
   N times per round (A1 A2 B, B A2 A1, ...), as ``--disagg-ab-runs-per-round=N`` does. Each run
   is measured with the other sides' servers stopped, as the plugin measures.
2. **statistics** (``--samples FILE``, or right after collecting): per medium, ``--reps`` sequential
   A/B decisions run exactly as the plugin runs them (``decide.sequential``), each drawing its rounds
   with replacement from one session's measured rounds: A/A = A1 vs A2 (false alarm = a
   ``regressed`` or ``improved`` TTFT verdict), A/B = A1 vs B (power = ``regressed``), both at the
   suite's default round budget. ``--use-runs 1`` pools only a round's first run per side: a file
   collected with ``--runs-per-round 2`` answers for both designs, and says how much two runs on
   one start differ (the host's moment) beside how much two starts differ.

Side B's known regressions: +5 % of A1's median TTFT (on the CPU box held before decode; on GPUs
the decode stream held back after the engine, ``--extra-stream-delay-ms``: a delay before the
engine moved an H100's TTFT 2.6 % where 5 % was meant), and on GPUs, where the shape's TPOT is GPU
work, +5 % of its median TPOT on every gap between streamed tokens (``--extra-token-delay-ms``;
``testing.faults.delayed``). On GPUs B is A2's servers
behind a second, delaying proxy (``DeploymentPool.front_with``): B then runs on another start than
A1, as an A/B's sides do, without a third start (~1 min with CUDA graphs). Where the collection
measured energy (NVML), J/token is decided too; its change under B is whatever the delays cost
(the window is longer at near-idle power), measured and printed, not a planted 5 %.

Last line exactly ``ab_power_5pct=<x> ab_false_alarm=<y> rounds=<n> metrics=<m1,...> device=<d>``
followed by ``<metric>=<power>`` for each metric: x is the worst power among the metrics with a
planted 5 % change (TTFT; TPOT where planted), y the worst false-alarm rate of every metric, over
every medium; n the default ``--disagg-ab-max-rounds``.

Usage::

    python benchmarks/ab_power.py                                  # collect on CPU (~25 min), then statistics
    python benchmarks/ab_power.py --samples ab-power-samples.json  # statistics only
    python benchmarks/ab_power.py --fresh --mediums colocated --runs-per-round 2        # both designs, one file
    python benchmarks/ab_power.py --device cuda --gpus 0 --collect-to s0.json              # one GPU session
    python benchmarks/ab_power.py --device cuda --gpus 0 --first-session 1 --collect-to s1.json
    python benchmarks/ab_power.py --samples s0.json s1.json                                # both sessions
    python benchmarks/ab_power.py --device cuda --rounds 26 --deadline-s 480 --collect-to g.json   # the GPU bar
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLES_SCHEMA = "pytest-disagg ab-power samples 1"
SHIFT = 0.05
GOAL_POWER, GOAL_FALSE_ALARM = 0.95, 0.01
METRIC = "ttft_ms"                           # the one metric of files collected before TPOT and J/token
PER_REQUEST = ("ttft_ms", "tpot_ms", "e2el_ms")
ENERGY = "energy_j_per_token"
SIDES = ("A1", "A2", "B")

# One round's workload: the A/B benchmark's own (``pytest_disagg.ab.workload.ab_spec``: closed loop,
# one request at a time, 512-token prompts, 8 output tokens, 48 requests) on its CPU model
# (``small-llama-cpu``), so that the rates measured here are those of
# ``pytest tests/benchmarks/test_ab_latency.py --disagg-model=small-llama-cpu --disagg-ab=...``.
PLAN = {  # medium -> sessions, rounds per session (~25 min in all on the 2-core box)
    "colocated": {"sessions": 2, "rounds": 12},
    "nixl-cpu": {"sessions": 1, "rounds": 12},
}
# On a GPU (``--device cuda``): the device's A/B shape (``ab.workload.SHAPES["cuda"]``) on its model,
# A1 and A2 sharing the GPU (B fronts A2), 2x the round budget in one session so that resampling
# gives a rate; one session per command (a command has 10 minutes on the lent GPU).
GPU_PLAN = {
    "colocated": {"sessions": 1, "rounds": 24},
    "nixl-gpu": {"sessions": 1, "rounds": 24},
}
GPU_MEMORY_SHARE = 0.45


class SamplesFileError(ValueError):
    """A samples file this benchmark cannot use; the message names it."""


# --- (a) collection -------------------------------------------------------------------------------

def collect(out: Path, mediums: list[str], plan: dict = PLAN, *, device: str = "cpu", gpus: tuple[int, ...] = (),
            first_session: int = 0, fresh: bool = False, model: str | None = None, runs_per_round: int = 1,
            b_fronts_a2: bool | None = None, eager: bool | None = None, deadline_s: float | None = None) -> dict:
    from pytest_disagg.ab.workload import CPU_MODEL, GPU_MODEL, shape_for
    from pytest_disagg.baseline.fingerprint import machine_info
    from pytest_disagg.children import processes
    from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
    from pytest_disagg.mediums import MediumRegistry

    t_start = time.monotonic()
    b_fronts_a2 = device != "cpu" if b_fronts_a2 is None else b_fronts_a2
    shape = shape_for(device)
    doc = {"schema": SAMPLES_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "collector": "pytest_disagg.measure.measured_run; " + ("fresh deployments every round" if fresh else
                                                                  "deployments alive per session") + ", rounds rotated"
                        + ("; B = A2's servers behind a delaying proxy" if b_fronts_a2 else ""),
           "fresh": fresh, "runs_per_round": runs_per_round, "device": device, "shape": shape.name,
           "b_fronts_a2": b_fronts_a2, "machine": machine_info(), "mediums": {}}
    processes.install_sigterm_handler()
    pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=3)
    meter = _energy_meter(device, gpus)
    runner = _RoundRunner(pool, meter, shape)
    try:
        for medium in mediums:
            p = plan[medium]
            base = dict(medium=medium, device=device, prefix_caching=False, max_model_len=shape.max_model_len,
                        eager=eager)
            if device == "cpu":
                base.update(model=model or CPU_MODEL, block_size=32)
            else:
                base.update(model=model or GPU_MODEL, gpus=gpus,
                            gpu_memory_utilization=GPU_MEMORY_SHARE / (1 if medium == "colocated" or len(gpus) > 1
                                                                       else 2))
            entry = {"plan": {**p, "requests": shape.requests}, "workload": shape.spec().to_json(),
                     "config": asdict(DeploymentConfig(**base)), "rounds": [], "sessions": []}
            doc["mediums"][medium] = entry
            for s in range(first_session, first_session + p["sessions"]):
                configs = {"A1": DeploymentConfig(**base, variant=f"s{s}a1"),
                           "A2": DeploymentConfig(**base, variant=f"s{s}a2")}
                calib = runner.run(configs["A1"], "A1", s, -1)        # sets the planted delays; not a round
                delays = planted_delays(calib, device)
                entry["sessions"].append({"session": s, "injected_delay_ms": delays["ttft_ms"],
                                          "injected": delays, "calibration": calib})
                b = runner.side_b(configs, delays, b_fronts_a2)
                for r in range(p["rounds"]):
                    if deadline_s is not None and time.monotonic() - t_start > deadline_s:
                        print(f"{medium} s{s}: deadline ({deadline_s:g} s) reached after {r} rounds", file=sys.stderr)
                        break
                    order = SIDES[r % 3:] + SIDES[:r % 3]
                    for rep in range(runs_per_round):      # A1 A2 B, then B A2 A1, ...: balanced in time
                        for side in (order if rep % 2 == 0 else order[::-1]):
                            entry["rounds"].append(runner.run(configs.get(side), side, s, r, rep, b=b))
                    write_samples(out, doc)
                    if fresh:                    # as --disagg-ab-fresh=yes: every round on new deployments
                        runner.release(configs)
                        b = runner.side_b(configs, delays, b_fronts_a2)
                runner.release(configs)
            write_samples(out, doc)
    finally:
        pool.close()
        if meter is not None:
            meter.stop()
        processes.restore_sigterm_handler()
    return doc


def write_samples(out: Path, doc: dict) -> None:
    """After every round, so that a collection cut short (a device call's time limit) keeps its rounds."""
    out.write_text(json.dumps(doc))


def planted_delays(calib: dict, device: str) -> dict[str, float]:
    """The known regressions of side B: +5 % of A1's median TTFT, and on GPUs +5 % of its median TPOT
    (on the CPU box's 8-token shape TPOT is a few steps of host time: no TPOT delay is planted)."""
    out = {"ttft_ms": round(SHIFT * float(np.median(calib["samples"]["ttft_ms"])), 3)}
    if device != "cpu":
        out["tpot_ms"] = round(SHIFT * float(np.median(calib["samples"]["tpot_ms"])), 4)
    return out


def _energy_meter(device: str, gpus: tuple[int, ...]):
    """An NVML meter on GPUs (J/token per run, sampled in a background thread); None on CPU."""
    if device == "cpu":
        return None
    from pytest_disagg.energy.nvml import EnergyMeter

    return EnergyMeter(gpus).start()


class _RoundRunner:
    """One side's run of a round, measured as the plugin measures (other sides paused where the
    device's policy pauses them, energy windows where a meter exists), and side B's deployment."""

    def __init__(self, pool, meter, shape):
        self.pool, self.meter, self.shape = pool, meter, shape

    def side_b(self, configs: dict, delays: dict, fronts_a2: bool):
        """B fronting A2 (a deployment, returned), or B's own config (put into ``configs``; None)."""
        from pytest_disagg.testing import faults

        ttft, tpot = delays["ttft_ms"], delays.get("tpot_ms", 0.0)
        if fronts_a2:      # TTFT on the stream: before the engine, 37 ms moved an H100's TTFT 2.6 % (of 5 % meant)
            a2 = self.pool.get(configs["A2"])
            medium = faults.delayed(a2.medium, token_delay_ms=tpot, stream_delay_ms=ttft)
            return self.pool.front_with(a2, faults.register(self.pool.registry, medium))
        own = dataclasses.replace(configs["A1"], variant=configs["A1"].variant.replace("a1", "b"))
        configs["B"] = faults.delayed_config(self.pool.registry, own, ttft, tpot)
        return None

    def release(self, configs: dict) -> None:
        for c in configs.values():
            self.pool.release(c)

    def run(self, config, side: str, session: int, rnd: int, rep: int = 0, b=None) -> dict:
        from pytest_disagg.measure import measured_run

        t0 = time.monotonic()
        deployment = b if (side == "B" and b is not None) else self.pool.get(config)
        started = time.monotonic() - t0
        # One seed per round and run, the same on every side, as in the plugin's A/B rounds.
        spec = self.shape.spec(seed=1000 * (session + 1) + rnd + 1 + 100_000 * rep)
        with self.pool.others_paused(deployment):        # as the plugin measures
            result = measured_run(deployment, spec, meter=self.meter, host_energy=False, progress=False)
        samples, scalars = result.samples(), dict(result.scalars())
        energy = f", {scalars[ENERGY] * 1000:.2f} mJ/token" if ENERGY in scalars else ""
        print(f"{deployment.config.medium} s{session} r{rnd}.{rep} {side}: median TTFT {np.median(samples[METRIC]):.2f} "
              f"ms, TPOT {np.median(samples['tpot_ms']):.3f} ms{energy} (load {os.getloadavg()[0]:.1f}, "
              f"{time.monotonic() - t0:.1f} s)", file=sys.stderr)
        return {"side": side, "session": session, "round": rnd, "rep": rep, "start_s": started if started > 1 else 0.0,
                "wall_s": result.wall_s, "n_failed": result.n_failed, "loadavg": os.getloadavg(),
                "samples": {k: list(map(float, samples[k])) for k in PER_REQUEST if k in samples},
                "scalars": scalars, "serving_mode": deployment.config.serving_mode()}



# --- (b) statistics on saved rounds ---------------------------------------------------------------

def load_all(paths: list[Path]) -> dict:
    """Several samples files as one: a medium's rounds and sessions from every file (sessions must
    not repeat: collect later files with ``--first-session``)."""
    docs = [load_samples(p) for p in paths]
    out = {**docs[0], "mediums": {}}
    for doc, path in zip(docs, paths):
        for name, entry in doc["mediums"].items():
            have = out["mediums"].setdefault(name, {**entry, "rounds": [], "sessions": []})
            seen = {r["session"] for r in have["rounds"]}
            clash = seen & {r["session"] for r in entry["rounds"]}
            if clash:
                raise SamplesFileError(f"{path}: {name} session {min(clash)} is also in an earlier samples file "
                                       f"(collect with --first-session)")
            have["rounds"] += entry["rounds"]
            have["sessions"] += entry.get("sessions", [])
    return out


def load_samples(path: Path) -> dict:
    from pytest_disagg.baseline.jsonfmt import read_json

    data = read_json(path, SamplesFileError, hint="was the collection interrupted?")
    if not isinstance(data, dict) or data.get("schema") != SAMPLES_SCHEMA:
        raise SamplesFileError(f"{path}: not an ab-power samples file (schema {SAMPLES_SCHEMA!r})")
    if not data.get("mediums"):
        raise SamplesFileError(f"{path}: no mediums")
    for name, entry in data["mediums"].items():
        for i, r in enumerate(entry.get("rounds") or []):
            values = r.get("samples", {}).get(METRIC)
            if r.get("side") not in SIDES or not values or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                                                  for v in values):
                raise SamplesFileError(f"{path}: {name} rounds[{i}] has no side or no finite {METRIC} samples")
    return data


def file_metrics(data: dict) -> list[str]:
    """The metrics a samples file can judge: TTFT always; TPOT where a TPOT delay was planted; J/token
    where every round measured it. Files from before TPOT and J/token judge TTFT alone."""
    out = [METRIC]
    entries = list(data["mediums"].values())
    if entries and all(any("tpot_ms" in (x.get("injected") or {}) for x in e.get("sessions", [])) for e in entries):
        out.append("tpot_ms")
    if entries and all(e["rounds"] and all(ENERGY in (r.get("scalars") or {}) for r in e["rounds"]) for e in entries):
        out.append(ENERGY)
    return out


def planted(entry: dict, metric: str) -> bool:
    return metric == METRIC or any(metric in (x.get("injected") or {}) for x in entry.get("sessions", []))


def figure(r: dict, metric: str) -> np.ndarray:
    """A run's figures of ``metric``: its requests' samples, or the run's one scalar (J/token)."""
    if metric in r.get("samples", {}):
        return np.asarray(r["samples"][metric], float)
    return np.asarray([r["scalars"][metric]], float)


def session_rounds(entry: dict, use_runs: int | None = None, metric: str = METRIC) -> dict[int, dict[str, list[np.ndarray]]]:
    """session -> side -> per-round arrays of ``metric``, in round order; only rounds complete on all
    sides. A round that ran each side more than once (``--runs-per-round``) pools its first
    ``use_runs`` runs per side (all when None), as a round's figure is the median of the side's requests."""
    by: dict[int, dict[int, dict[str, list]]] = {}
    for r in entry["rounds"]:
        if use_runs is not None and r.get("rep", 0) >= use_runs:
            continue
        by.setdefault(r["session"], {}).setdefault(r["round"], {}).setdefault(r["side"], []).append(figure(r, metric))
    out = {}
    for s, rounds in sorted(by.items()):
        full = [{side: np.concatenate(runs) for side, runs in rounds[k].items()} for k in sorted(rounds)
                if all(side in rounds[k] for side in SIDES)]
        if len(full) >= 2:
            out[s] = {side: [f[side] for f in full] for side in SIDES}
    return out


def run_to_run(entry: dict, metric: str = METRIC) -> float | None:
    """The SD of one run's median between runs of the *same* start (from rounds that ran each side
    twice or more: log(run 2 / run 1) per deployment, SD / sqrt 2) — the host's moment, which more
    runs per round average; what is left of a round's spread beyond it is start-to-start."""
    meds: dict[tuple, dict[int, float]] = {}
    for r in entry["rounds"]:
        meds.setdefault((r["session"], r["round"], r["side"]), {})[r.get("rep", 0)] = float(np.median(figure(r, metric)))
    d = [math.log(m[1] / m[0]) for m in meds.values() if 0 in m and 1 in m]
    return float(np.std(d, ddof=1) / math.sqrt(2)) if len(d) >= 3 else None


def drift(entry: dict, use_runs: int | None = None, metric: str = METRIC) -> list[list]:
    """Within- vs between-deployment spread of ``metric``: the SD of round medians on one deployment
    (as % of the session's A1 median) beside A2/A1, two deployments of the same software started
    apart, with its 99 % interval over paired rounds (Hodges-Lehmann, as the verdict computes it: an
    interval excluding 1 is start-to-start drift that interleaving alone would call a change), and
    B/A1 (the planted change)."""
    from pytest_disagg import stats

    rows = []
    for s, sides in session_rounds(entry, use_runs, metric).items():
        med = {side: np.array([np.median(r) for r in sides[side]]) for side in SIDES}
        ref = float(np.median(med["A1"]))
        within = float(np.mean([np.std(med[x], ddof=1) for x in ("A1", "A2")])) / ref
        paired = med["A2"] / med["A1"]
        aa = stats.hodges_lehmann_ratio(np.log(paired), 0.99)
        ab = stats.hodges_lehmann_ratio(np.log(med["B"] / med["A1"]), 0.99)
        rows.append([metric, s, len(med["A1"]), f"{ref:.4g}", f"{within * 100:.2f} %",
                     f"{aa.ratio:.3f} [{aa.lo:.3f}, {aa.hi:.3f}]", _percent(stats.paired_noise(np.log(paired))),
                     f"{ab.ratio:.3f} [{ab.lo:.3f}, {ab.hi:.3f}]"])
    return rows


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f} %"


def session_log_ratios(entry: dict, use_runs: int | None = None, metric: str = METRIC) -> list[np.ndarray]:
    """log(A2 / A1) of every complete round, one array per session."""
    return [np.log([np.median(b) / np.median(a) for a, b in zip(sides["A1"], sides["A2"])])
            for sides in session_rounds(entry, use_runs, metric).values()]


def aa_log_ratios(entry: dict, use_runs: int | None = None, metric: str = METRIC) -> np.ndarray:
    """log(A2 / A1) of every complete round, all sessions: the A/A noise the rule works against."""
    return np.concatenate(session_log_ratios(entry, use_runs, metric) or [np.array([])])


def resolution_line(d: np.ndarray, looks: tuple[int, ...], metric: str = METRIC) -> str:
    """What the rule can tell apart at this medium's measured A/A rounds ``d`` (log A2/A1): their SD,
    and the smallest change the budget calls with 95 % power and the rounds 5 % would take, planned
    with the SD's upper bound as a verdict plans them (``decide.resolution``)."""
    from pytest_disagg.ab.decide import level, resolution

    r = resolution(d, level(len(looks)), rounds=looks[-1])
    if not r:
        return f"{metric} resolution: fewer than 4 complete rounds"
    can = "no change" if r["resolves"] is None else f"changes >= {r['resolves']:.1%}"
    need = f"~{r['rounds_needed']} rounds" if r["rounds_needed"] else "more rounds than any budget"
    return (f"{metric} resolution: A2/A1 moves {r['noise']:.2%} (SD) per round over {d.size} rounds, so "
            f"{looks[-1]} rounds resolve {can} with 95 % power; 5 % takes {need}")


def model_power(noise: float | None, looks: tuple[int, ...]) -> float | None:
    """The rule's power for +5 % at the budget, from the measured A/A noise (``stats.power_at``, the
    approximation checked against simulated verdicts; ``noise``: the rounds' SD, tail included):
    what the bar line reports where the rounds are too few to be resampled into a rate
    (``can_resample``)."""
    from pytest_disagg import stats
    from pytest_disagg.ab.decide import level

    return None if noise is None else stats.power_at(SHIFT, noise, looks[-1], level(len(looks)))


def can_resample(entry: dict, looks: tuple[int, ...], use_runs: int | None = None) -> bool:
    """Whether drawing a budget's rounds from each session gives decisions that differ: with fewer
    than twice the budget, every draw holds most of the same rounds (all of them, at exactly the
    budget), so 500 decisions are one decision repeated — a count, not a rate."""
    sessions = session_rounds(entry, use_runs).values()
    return bool(sessions) and all(len(sides["A1"]) >= 2 * looks[-1] for sides in sessions)


def trial(tables: dict[str, dict[str, list[np.ndarray]]], other: str, looks: tuple[int, ...],
          rng: np.random.Generator, seed: int) -> dict[str, str]:
    """One sequential A/B decision over every metric at once, as the plugin decides (more rounds
    while any is undecided), rounds drawn (paired, with replacement) from one session;
    ``tables``: metric -> side -> per-round arrays. Returns metric -> verdict word."""
    from pytest_disagg.ab.decide import Sequential
    from pytest_disagg.metrics import METRICS

    seq = Sequential({m: METRICS[m].direction for m in tables}, looks)
    n = min(len(t["A1"]) for t in tables.values())
    # Without replacement where the session has the budget's rounds: a duplicated round would make
    # the rank tests see agreement that was never measured (false alarms overstated).
    picks = rng.permutation(n)[:looks[-1]] if n >= looks[-1] else rng.integers(0, n, looks[-1])
    for k in picks:
        seq.add_round({m: t["A1"][k] for m, t in tables.items()}, {m: t[other][k] for m, t in tables.items()})
        if seq.look():
            break
    return {m: v.verdict for m, v in seq.verdicts.items()}


def rates(entry: dict, looks: tuple[int, ...], reps: int, seed: int, use_runs: int | None = None,
          metrics: tuple[str, ...] = (METRIC,)) -> dict[str, dict]:
    """metric -> {"counts", "false_alarm", "power"} over ``reps`` resampled A/A and A/B decisions."""
    from pytest_disagg import verdicts

    per_metric = {m: session_rounds(entry, use_runs, m) for m in metrics}
    sessions = sorted(set.intersection(*(set(v) for v in per_metric.values())))
    rng = np.random.default_rng(seed)
    counts = {m: {"A/A": {}, "A/B +5%": {}} for m in metrics}
    for rep in range(reps):
        s = sessions[rep % len(sessions)]
        tables = {m: per_metric[m][s] for m in metrics}
        for label, other in (("A/A", "A2"), ("A/B +5%", "B")):
            for m, word in trial(tables, other, looks, rng, seed * 7919 + rep).items():
                counts[m][label][word] = counts[m][label].get(word, 0) + 1
    out = {}
    for m, c in counts.items():
        fa = (c["A/A"].get(verdicts.REGRESSED, 0) + c["A/A"].get(verdicts.IMPROVED, 0)) / reps
        out[m] = {"counts": c, "false_alarm": fa, "power": c["A/B +5%"].get(verdicts.REGRESSED, 0) / reps}
    return out


HONESTY_VERDICTS = 250   # A/A verdicts whose printed resolution is checked, 4 planted decisions each
HONESTY_JITTER = 0.3      # smoothed bootstrap's kernel, in SDs of the rounds (variance kept: ``_smoothed_draw``)


def _smoothed_draw(d: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rounds drawn from ``d`` with replacement, each moved by a normal kernel of
    ``HONESTY_JITTER`` SDs and shrunk back to ``d``'s variance. Plain resampling repeats rounds, and
    repeated rounds tie in the rank test, which lowers its power: a check drawn that way understates
    what the rule calls on rounds that are all measured."""
    sd, mean = float(np.std(d, ddof=1)), float(np.mean(d))
    x = d[rng.integers(0, d.size, n)] + rng.normal(0.0, HONESTY_JITTER * sd, n)
    return mean + (x - mean) / np.sqrt(1.0 + HONESTY_JITTER ** 2)


def resolution_check(entry: dict, looks: tuple[int, ...], reps: int, seed: int, use_runs: int | None = None,
                     metric: str = METRIC, plants: int = 4) -> tuple[float, float, int] | None:
    """Is the ``resolves`` figure a verdict prints honest? As a user meets it: an A/A verdict of a
    budget's rounds prints the change its rounds resolve (``decide.resolution``, from those rounds
    alone); that change planted on ``plants`` other draws of a budget's rounds is then called
    ``regressed`` by the rule (sequential, its looks) — over ``reps`` verdicts, ~95 % of the time
    if the figure is honest. Rounds: the real A2/A1 log ratios, each session's centred on its
    median (the start-to-start offset of two kept-up starts is a bias no count of rounds shows; the
    A/A false-alarm line measures it), drawn by ``_smoothed_draw``. Returns (median printed
    change, power, rounds pooled); None below 8 rounds."""
    from pytest_disagg.ab.decide import Sequential, level, resolution
    from pytest_disagg.metrics import METRICS
    from pytest_disagg.verdicts import REGRESSED

    d = np.concatenate([x - np.median(x) for x in session_log_ratios(entry, use_runs, metric)] or [np.array([])])
    if d.size < 8 or np.std(d) == 0:
        return None
    rng = np.random.default_rng(seed)
    lvl, budget = level(len(looks)), looks[-1]
    printed, hits, trials = [], 0, 0
    for _ in range(reps):
        change = resolution(_smoothed_draw(d, budget, rng), lvl).get("resolves")
        if change is None:
            continue
        printed.append(change)
        for _ in range(plants):
            seq = Sequential({metric: METRICS[metric].direction}, looks)
            for x in _smoothed_draw(d, budget, rng) + np.log1p(change):
                seq.add_round({metric: [1.0]}, {metric: [float(np.exp(x))]})
                if seq.look():
                    break
            hits += seq.verdicts[metric].verdict == REGRESSED
            trials += 1
    return None if not trials else (float(np.median(printed)), hits / trials, int(d.size))


def wilson(hits: float, n: int, z: float = 1.96) -> tuple[float, float]:
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def statistics(data: dict, *, reps: int, seed: int, max_rounds: int,
               use_runs: int | None = None) -> dict:
    """Per medium and metric: the drift table, the resolution, the resampled rates. Returns the bar:
    {"power": worst planted metric's power, "false_alarm": worst metric's, "metrics": [...],
    "per_metric": metric -> worst power over mediums}."""
    from tabulate import tabulate

    from pytest_disagg import stats
    from pytest_disagg.ab.decide import ALPHA, SAME_BAND
    from pytest_disagg.ab.options import DEFAULT_MAX_ROUNDS, MIN_ROUNDS, ROUND_STEP, ABOptions

    looks = ABOptions(None, (), (), max_rounds, "auto").looks()
    metrics = tuple(file_metrics(data))
    print(f"samples: {data.get('collector')}; created {data.get('created')}; device {device_of(data)}")
    print(f"rule: alpha {ALPHA} over {len(looks)} looks at rounds {list(looks)} (min {MIN_ROUNDS}, step {ROUND_STEP}, "
          f"default max {DEFAULT_MAX_ROUNDS}), same band ±{SAME_BAND * 100:g} %, {reps} repetitions per medium; "
          f"metrics {', '.join(metrics)}, decided together as the plugin decides\n")
    fa_all, pw_planted, pw_metric = [], [], {}
    for name, entry in data["mediums"].items():
        plan = entry.get("plan", {})
        print(f"{name}: {plan.get('requests')} requests per run, {json.dumps(entry.get('workload', {}).get('arrival'))}; "
              f"planted per session: {[s.get('injected') or {'ttft_ms': s['injected_delay_ms']} for s in entry.get('sessions', [])]} (ms)")
        runs = max((r.get("rep", 0) for r in entry["rounds"]), default=0) + 1
        used = runs if use_runs is None else min(use_runs, runs)
        sd = run_to_run(entry)
        print(f"runs per side per round: {used} of the {runs} measured"
              + ("" if sd is None else f"; run-to-run SD of median TTFT within one start: {sd * 100:.1f} %"))
        print(tabulate([row for m in metrics for row in drift(entry, use_runs, m)],
                       headers=["metric", "session", "rounds", "A1 median", "within: round SD",
                                "A2/A1 [99 %] (start-to-start)", "A2/A1 round noise (robust SD)",
                                "B/A1 [99 %] (planted)"], tablefmt="simple"))
        short = [s for s, sides in session_rounds(entry, use_runs).items() if len(sides["A1"]) < looks[-1]]
        if short:
            print(f"  note: session(s) {short} have fewer rounds than the budget ({looks[-1]}): rounds drawn with "
                  f"replacement there, which overstates false alarms (duplicated rounds)")
        resample = can_resample(entry, looks, use_runs)
        r = rates(entry, looks, reps, seed, use_runs, metrics)
        for m in metrics:
            d = aa_log_ratios(entry, use_runs, m)                               # A2/A1 per round, all sessions
            noise = stats.paired_sd(d)
            print("  " + resolution_line(d, looks, m))
            rm = r[m]
            lo, hi = wilson(rm["false_alarm"] * reps, reps)
            plo, phi = wilson(rm["power"] * reps, reps)
            what = "+5 % planted" if planted(entry, m) else "no 5 % planted: the delays' own cost"
            print(f"  {m} A/A verdicts {rm['counts']['A/A']}: false alarm {rm['false_alarm'] * 100:.1f} % "
                  f"[{lo * 100:.1f}, {hi * 100:.1f}]")
            print(f"  {m} A/B verdicts ({what}) {rm['counts']['A/B +5%']}: power {rm['power'] * 100:.1f} % "
                  f"[{plo * 100:.1f}, {phi * 100:.1f}]")
            power = rm["power"]
            modelled = model_power(noise, looks)
            if modelled is not None and planted(entry, m):
                print(f"  {m} power for +5 % at the measured A/A noise (stats.power_at): {modelled * 100:.1f} %")
            if not resample and planted(entry, m):
                power = modelled if modelled is not None else power
            fa_all.append(rm["false_alarm"])
            pw_metric[m] = min(pw_metric.get(m, 1.0), power)
            if planted(entry, m):
                pw_planted.append(power)
            check = resolution_check(entry, looks, min(reps, HONESTY_VERDICTS), seed, use_runs, m)
            if check is not None:
                print(f"  {m} honesty of the printed resolution: an A/A verdict of {looks[-1]} rounds resolves "
                      f"{check[0]:.1%} (median); that change planted on other rounds (smoothed draws from "
                      f"{check[2]} real ones) is called regressed {check[1]:.1%} of the time (it promises 95 %)")
        if not resample:
            print(f"  caution: fewer than {2 * looks[-1]} rounds per session for a budget of {looks[-1]}: the resampled "
                  f"decisions above are one A/B repeated, not rates; the bar line takes the modelled power")
        print()
    return {"power": min(pw_planted), "false_alarm": max(fa_all), "metrics": list(metrics), "per_metric": pw_metric}


def device_of(data: dict) -> str:
    """The device a samples file was collected on (files before the field: their machine's GPUs)."""
    if data.get("device"):
        return "cpu" if data["device"] == "cpu" else "cuda"
    machine = data.get("machine") or {}
    return "cuda" if machine.get("gpu") or machine.get("gpu_count") else "cpu"


def bar_line(bar: dict, max_rounds: int, device: str) -> str:
    each = " ".join(f"{m}={p:.3f}" for m, p in bar["per_metric"].items())
    return (f"ab_power_5pct={bar['power']:.3f} ab_false_alarm={bar['false_alarm']:.3f} rounds={max_rounds} "
            f"metrics={','.join(bar['metrics'])} device={device} {each}")


def main(argv: list[str] | None = None) -> int:
    from pytest_disagg.ab.options import DEFAULT_MAX_ROUNDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, nargs="+", help="statistics only, from samples file(s) written by a "
                                                            "collection (sessions of several files are combined)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="collect: cpu (default) or cuda")
    from pytest_disagg.ab.workload import CPU_MODEL, GPU_MODEL

    ap.add_argument("--model", help=f"collect: model fixture (default {CPU_MODEL} on cpu, {GPU_MODEL} on cuda: "
                                     "the devices' A/B shapes were chosen on these)")
    ap.add_argument("--eager", choices=("auto", "yes", "no"), default="auto",
                    help="collect: serve with --enforce-eager (auto: the device's policy, CUDA graphs on GPUs)")
    ap.add_argument("--b-own-servers", action="store_true",
                    help="collect: side B on servers of its own (default on GPUs: A2's servers behind a delaying "
                         "proxy, one start fewer per session)")
    ap.add_argument("--deadline-s", type=float, help="collect: start no round after this many seconds (the rounds "
                                                     "so far are kept: a device call's time limit)")
    ap.add_argument("--gpus", default="0", help="collect on cuda: GPU indices (default 0)")
    ap.add_argument("--first-session", type=int, default=0, help="collect: number of the first session (to combine "
                                                                 "files of several commands)")
    ap.add_argument("--sessions", type=int, help="collect: sessions per medium (default: the plan's)")
    ap.add_argument("--rounds", type=int, help="collect: rounds per session (default: the plan's)")
    ap.add_argument("--collect-to", type=Path, default=Path("ab-power-samples.json"),
                    help="where the collection writes its rounds (default ab-power-samples.json)")
    ap.add_argument("--mediums", default="colocated,nixl-cpu", help="collect: mediums (default colocated,nixl-cpu)")
    ap.add_argument("--fresh", action="store_true",
                    help="collect: three fresh deployments every round (the plugin's default --disagg-ab-fresh=yes; "
                         "~3 starts per round, ~25 min per 12 colocated rounds here) instead of three kept up")
    ap.add_argument("--runs-per-round", type=int, default=1,
                    help="collect: runs of each side per round (A1 A2 B, B A2 A1, ...; default 1, as the plugin)")
    ap.add_argument("--use-runs", type=int, help="statistics: pool only the first N runs per side of each round "
                                                 "(default: all in the file): one file compares both designs")
    ap.add_argument("--no-statistics", action="store_true",
                    help="collect only (on a lent GPU the statistics are CPU work: run them later with --samples)")
    ap.add_argument("--reps", type=int, default=500, help="sequential decisions per medium and scenario")
    ap.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS,
                    help=f"round budget (default: the suite's --disagg-ab-max-rounds default, {DEFAULT_MAX_ROUNDS})")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    for flag, value in (("--runs-per-round", args.runs_per_round), ("--use-runs", args.use_runs)):
        if value is not None and value < 1:
            ap.error(f"{flag}={value}: at least 1")
    if args.samples is None:
        plan = {k: dict(v) for k, v in (PLAN if args.device == "cpu" else GPU_PLAN).items()}
        mediums = [m.strip() for m in args.mediums.split(",") if m.strip()]
        if args.device == "cuda" and args.mediums == "colocated,nixl-cpu":
            mediums = ["colocated"]
        unknown = [m for m in mediums if m not in plan]
        if unknown:
            ap.error(f"--mediums: no {args.device} collection plan for {unknown[0]!r}; known: {', '.join(plan)}")
        for m in mediums:
            for key in ("sessions", "rounds"):
                if getattr(args, key) is not None:
                    plan[m][key] = getattr(args, key)
        try:
            gpus = tuple(int(g) for g in args.gpus.split(",")) if args.device == "cuda" else ()
        except ValueError:
            ap.error(f"--gpus={args.gpus!r}: give GPU indices like 0 or 0,1")
        from pytest_disagg.options import parse_eager

        collect(args.collect_to, mediums, plan, device=args.device, gpus=gpus, first_session=args.first_session,
                fresh=args.fresh, model=args.model, runs_per_round=args.runs_per_round,
                b_fronts_a2=False if args.b_own_servers else None, eager=parse_eager(args.eager),
                deadline_s=args.deadline_s)
        paths = [args.collect_to]
        if args.no_statistics:
            print(f"ab_power: rounds written to {args.collect_to}; statistics: --samples {args.collect_to}")
            return 0
    else:
        paths = args.samples
    try:
        data = load_all(paths)
    except SamplesFileError as exc:
        print(f"ab_power: {exc}", file=sys.stderr)
        return 2
    bar = statistics(data, reps=args.reps, seed=args.seed, max_rounds=args.max_rounds, use_runs=args.use_runs)
    print(bar_line(bar, args.max_rounds, device_of(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
