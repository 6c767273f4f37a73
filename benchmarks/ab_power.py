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

Last line exactly ``ab_power_5pct=<x> ab_false_alarm=<y> rounds=<n>`` (worst medium of each; n =
the default ``--disagg-ab-max-rounds``).

Usage::

    python benchmarks/ab_power.py                                  # collect on CPU (~25 min), then statistics
    python benchmarks/ab_power.py --samples ab-power-samples.json  # statistics only
    python benchmarks/ab_power.py --fresh --mediums colocated --runs-per-round 2        # both designs, one file
    python benchmarks/ab_power.py --device cuda --gpus 0 --collect-to s0.json              # one GPU session
    python benchmarks/ab_power.py --device cuda --gpus 0 --first-session 1 --collect-to s1.json
    python benchmarks/ab_power.py --samples s0.json s1.json                                # both sessions
"""
from __future__ import annotations

import argparse
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
METRIC = "ttft_ms"
PER_REQUEST = ("ttft_ms", "tpot_ms", "e2el_ms")
SIDES = ("A1", "A2", "B")

# One round's workload: the A/B benchmark's own (``pytest_disagg.ab.workload.ab_spec``: closed loop,
# one request at a time, 512-token prompts, 8 output tokens, 48 requests) on its CPU model
# (``small-llama-cpu``), so that the rates measured here are those of
# ``pytest tests/benchmarks/test_ab_latency.py --disagg-model=small-llama-cpu --disagg-ab=...``.
PLAN = {  # medium -> sessions, rounds per session (~25 min in all on the 2-core box)
    "colocated": {"sessions": 2, "rounds": 12},
    "nixl-cpu": {"sessions": 1, "rounds": 12},
}
# On a GPU (``--device cuda``): tiny-llama-gpu, the three deployments of a session share the GPUs
# (a quarter of the memory each), one session per command so that a command fits in 10 minutes.
GPU_PLAN = {
    "colocated": {"sessions": 1, "rounds": 12},
    "nixl-gpu": {"sessions": 1, "rounds": 12},
}
GPU_MEMORY_SHARE = 0.25
GPU_MODEL = "tiny-llama-gpu"


class SamplesFileError(ValueError):
    """A samples file this benchmark cannot use; the message names it."""


# --- (a) collection -------------------------------------------------------------------------------

def collect(out: Path, mediums: list[str], plan: dict = PLAN, *, device: str = "cpu", gpus: tuple[int, ...] = (),
            first_session: int = 0, fresh: bool = False, model: str | None = None, runs_per_round: int = 1) -> dict:
    from pytest_disagg.baseline.fingerprint import machine_info
    from pytest_disagg.children import processes
    from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
    from pytest_disagg.ab.workload import CPU_MODEL, ab_spec
    from pytest_disagg.load import WorkloadSpec, run_workload
    from pytest_disagg.mediums import MediumRegistry
    from pytest_disagg.testing.faults import delayed_config

    doc = {"schema": SAMPLES_SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "collector": "pytest_disagg.load.run_workload; " + ("three fresh deployments every round" if fresh else
                                                                "three deployments alive per session") + ", rounds rotated",
           "fresh": fresh, "runs_per_round": runs_per_round,
           "machine": machine_info(), "mediums": {}}
    processes.install_sigterm_handler()
    pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=3)
    def spec(medium: str, p: dict, session: int, rnd: int, rep: int = 0) -> WorkloadSpec:
        # One seed per round and run, the same on every side, as in the plugin's A/B rounds.
        return ab_spec(device, medium, seed=1000 * (session + 1) + rnd + 1 + 100_000 * rep)

    def one_round(config, medium: str, p: dict, side: str, session: int, rnd: int, rep: int = 0) -> dict:
        t0 = time.monotonic()
        deployment = pool.get(config)
        started = time.monotonic() - t0
        with pool.others_paused(deployment):        # as the plugin measures: the other sides stopped
            result = run_workload(deployment, spec(medium, p, session, rnd, rep), progress=False)  # B: +delay
        samples = result.samples()
        print(f"{config.medium} s{session} r{rnd}.{rep} {side}: median TTFT {np.median(samples[METRIC]):.2f} ms "
              f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        return {"side": side, "session": session, "round": rnd, "rep": rep, "start_s": started if started > 1 else 0.0,
                "wall_s": result.wall_s, "n_failed": result.n_failed, "loadavg": os.getloadavg(),
                "samples": {k: list(map(float, samples[k])) for k in PER_REQUEST if k in samples},
                "scalars": dict(result.scalars())}

    try:
        for medium in mediums:
            p = plan[medium]
            if device == "cpu":
                base = dict(medium=medium, model=model or CPU_MODEL, device="cpu", block_size=32, prefix_caching=False)
            else:
                base = dict(medium=medium, model=model or GPU_MODEL, device="cuda", gpus=gpus, prefix_caching=False,
                            gpu_memory_utilization=GPU_MEMORY_SHARE / (1 if medium == "colocated" or len(gpus) > 1
                                                                       else 2))
            w = spec(medium, p, 0, 0)
            entry = {"plan": {**p, "requests": w.num_requests}, "workload": w.to_json(),
                     "config": asdict(DeploymentConfig(**base)), "rounds": [], "sessions": []}
            doc["mediums"][medium] = entry
            for s in range(first_session, first_session + p["sessions"]):
                a1 = DeploymentConfig(**base, variant=f"s{s}a1")
                a2 = DeploymentConfig(**base, variant=f"s{s}a2")
                calib = one_round(a1, medium, p, "A1", s, -1)        # sets the +5 % delay; not a measured round
                delay = round(SHIFT * float(np.median(calib["samples"][METRIC])), 3)
                b = delayed_config(pool.registry, DeploymentConfig(**base, variant=f"s{s}b"), delay)
                entry["sessions"].append({"session": s, "injected_delay_ms": delay, "calibration": calib})
                configs = {"A1": a1, "A2": a2, "B": b}
                for r in range(p["rounds"]):
                    order = SIDES[r % 3:] + SIDES[:r % 3]
                    for rep in range(runs_per_round):      # A1 A2 B, then B A2 A1, ...: balanced in time
                        for side in (order if rep % 2 == 0 else order[::-1]):
                            entry["rounds"].append(one_round(configs[side], medium, p, side, s, r, rep))
                    out.write_text(json.dumps(doc))
                    if fresh:                    # as --disagg-ab-fresh=yes: every round on new deployments
                        for c in configs.values():
                            pool.release(c)
                for c in configs.values():
                    pool.release(c)
            out.write_text(json.dumps(doc))
    finally:
        pool.close()
        processes.restore_sigterm_handler()
    return doc



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


def session_rounds(entry: dict, use_runs: int | None = None) -> dict[int, dict[str, list[np.ndarray]]]:
    """session -> side -> per-round TTFT arrays, in round order; only rounds complete on all sides.
    A round that ran each side more than once (``--runs-per-round``) pools its first ``use_runs``
    runs per side (all when None), as a round's figure is the median of the side's requests."""
    by: dict[int, dict[int, dict[str, list]]] = {}
    for r in entry["rounds"]:
        if use_runs is not None and r.get("rep", 0) >= use_runs:
            continue
        by.setdefault(r["session"], {}).setdefault(r["round"], {}).setdefault(r["side"], []).append(
            np.asarray(r["samples"][METRIC], float))
    out = {}
    for s, rounds in sorted(by.items()):
        full = [{side: np.concatenate(runs) for side, runs in rounds[k].items()} for k in sorted(rounds)
                if all(side in rounds[k] for side in SIDES)]
        if len(full) >= 2:
            out[s] = {side: [f[side] for f in full] for side in SIDES}
    return out


def run_to_run(entry: dict) -> float | None:
    """The SD of one run's median TTFT between runs of the *same* start (from rounds that ran each
    side twice or more: log(run 2 / run 1) per deployment, SD / sqrt 2) — the host's moment, which
    more runs per round average; what is left of a round's spread beyond it is start-to-start."""
    meds: dict[tuple, dict[int, float]] = {}
    for r in entry["rounds"]:
        meds.setdefault((r["session"], r["round"], r["side"]), {})[r.get("rep", 0)] = float(
            np.median(r["samples"][METRIC]))
    d = [math.log(m[1] / m[0]) for m in meds.values() if 0 in m and 1 in m]
    return float(np.std(d, ddof=1) / math.sqrt(2)) if len(d) >= 3 else None


def drift(entry: dict, use_runs: int | None = None) -> list[list]:
    """Within- vs between-deployment spread: the SD of round medians on one deployment (as % of
    the session's A1 median) beside A2/A1, two deployments of the same software started apart,
    with its 99 % interval over paired rounds (Hodges-Lehmann, as the verdict computes it: an
    interval excluding 1 is start-to-start drift that interleaving alone would call a change), and
    B/A1 (the +5 % injected)."""
    from pytest_disagg import stats

    rows = []
    for s, sides in session_rounds(entry, use_runs).items():
        med = {side: np.array([np.median(r) for r in sides[side]]) for side in SIDES}
        ref = float(np.median(med["A1"]))
        within = float(np.mean([np.std(med[x], ddof=1) for x in ("A1", "A2")])) / ref
        paired = med["A2"] / med["A1"]
        aa = stats.hodges_lehmann_ratio(np.log(paired), 0.99)
        ab = stats.hodges_lehmann_ratio(np.log(med["B"] / med["A1"]), 0.99)
        rows.append([s, len(med["A1"]), f"{ref:.2f}", f"{within * 100:.1f} %",
                     f"{aa.ratio:.3f} [{aa.lo:.3f}, {aa.hi:.3f}]", f"{np.std(paired, ddof=1) * 100:.1f} %",
                     f"{ab.ratio:.3f} [{ab.lo:.3f}, {ab.hi:.3f}]"])
    return rows


def aa_log_ratios(entry: dict, use_runs: int | None = None) -> np.ndarray:
    """log(A2 / A1) of every complete round, all sessions: the A/A noise the rule works against."""
    return np.concatenate([np.log([np.median(b) / np.median(a) for a, b in zip(sides["A1"], sides["A2"])])
                           for sides in session_rounds(entry, use_runs).values()] or [np.array([])])


def resolution_line(noise: float | None, looks: tuple[int, ...]) -> str:
    """What the rule can tell apart at this medium's measured A/A noise: the smallest change the
    budget calls with 95 % power, and the rounds 5 % would take — the figures an undecided verdict
    prints (``decide.resolution_at``)."""
    from pytest_disagg.ab.decide import level, resolution_at

    if noise is None:
        return "resolution: fewer than 4 complete rounds"
    r = resolution_at(noise, looks[-1], level(len(looks)))
    can = "no change" if r["resolves"] is None else f"changes >= {r['resolves']:.1%}"
    need = f"~{r['rounds_needed']} rounds" if r["rounds_needed"] else "more rounds than any budget"
    return (f"resolution: A2/A1 moves {noise:.1%} (robust SD) per round, so {looks[-1]} rounds "
            f"resolve {can} with 95 % power; 5 % takes {need}")


def model_power(noise: float | None, looks: tuple[int, ...]) -> float | None:
    """The rule's power for +5 % at the budget, from the measured A/A noise (``stats.power_at``, the
    approximation checked against simulated verdicts): what the bar line reports where the rounds
    are too few to be resampled into a rate (``can_resample``)."""
    from pytest_disagg import stats
    from pytest_disagg.ab.decide import level

    return None if noise is None else stats.power_at(SHIFT, noise, looks[-1], level(len(looks)))


def can_resample(entry: dict, looks: tuple[int, ...], use_runs: int | None = None) -> bool:
    """Whether drawing a budget's rounds from each session gives decisions that differ: with fewer
    than twice the budget, every draw holds most of the same rounds (all of them, at exactly the
    budget), so 500 decisions are one decision repeated — a count, not a rate."""
    sessions = session_rounds(entry, use_runs).values()
    return bool(sessions) and all(len(sides["A1"]) >= 2 * looks[-1] for sides in sessions)


def trial(sides: dict[str, list[np.ndarray]], other: str, looks: tuple[int, ...], rng: np.random.Generator,
          seed: int) -> str:
    """One sequential A/B decision on TTFT, rounds drawn (paired, with replacement) from one session."""
    from pytest_disagg.ab.decide import Sequential

    seq = Sequential({METRIC: "lower"}, looks)
    n = len(sides["A1"])
    # Without replacement where the session has the budget's rounds: a duplicated round would make
    # the rank tests see agreement that was never measured (false alarms overstated).
    picks = rng.permutation(n)[:looks[-1]] if n >= looks[-1] else rng.integers(0, n, looks[-1])
    for k in picks:
        seq.add_round({METRIC: sides["A1"][k]}, {METRIC: sides[other][k]})
        if seq.look():
            break
    return seq.verdicts[METRIC].verdict


def rates(entry: dict, looks: tuple[int, ...], reps: int, seed: int, use_runs: int | None = None) -> dict:
    from pytest_disagg import verdicts

    sessions = list(session_rounds(entry, use_runs).values())
    rng = np.random.default_rng(seed)
    out = {"A/A": {}, "A/B +5%": {}}
    for rep in range(reps):
        sides = sessions[rep % len(sessions)]
        for label, other in (("A/A", "A2"), ("A/B +5%", "B")):
            word = trial(sides, other, looks, rng, seed * 7919 + rep)
            out[label][word] = out[label].get(word, 0) + 1
    fa = (out["A/A"].get(verdicts.REGRESSED, 0) + out["A/A"].get(verdicts.IMPROVED, 0)) / reps
    power = out["A/B +5%"].get(verdicts.REGRESSED, 0) / reps
    return {"counts": out, "false_alarm": fa, "power": power}


def wilson(hits: float, n: int, z: float = 1.96) -> tuple[float, float]:
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def statistics(data: dict, *, reps: int, seed: int, max_rounds: int,
               use_runs: int | None = None) -> tuple[float, float]:
    from tabulate import tabulate

    from pytest_disagg import stats
    from pytest_disagg.ab.decide import ALPHA, SAME_BAND
    from pytest_disagg.ab.options import DEFAULT_MAX_ROUNDS, MIN_ROUNDS, ROUND_STEP, ABOptions

    looks = ABOptions(None, (), (), max_rounds, "auto").looks()
    print(f"samples: {data.get('collector')}; created {data.get('created')}")
    print(f"rule: alpha {ALPHA} over {len(looks)} looks at rounds {list(looks)} (min {MIN_ROUNDS}, step {ROUND_STEP}, "
          f"default max {DEFAULT_MAX_ROUNDS}), same band ±{SAME_BAND * 100:g} %, {reps} repetitions per medium\n")
    fa_all, pw_all = [], []
    for name, entry in data["mediums"].items():
        plan = entry.get("plan", {})
        print(f"{name}: {plan.get('requests')} requests per run, {json.dumps(entry.get('workload', {}).get('arrival'))}; "
              f"injected delay per session: {[s['injected_delay_ms'] for s in entry.get('sessions', [])]} ms")
        runs = max((r.get("rep", 0) for r in entry["rounds"]), default=0) + 1
        used = runs if use_runs is None else min(use_runs, runs)
        sd = run_to_run(entry)
        print(f"runs per side per round: {used} of the {runs} measured"
              + ("" if sd is None else f"; run-to-run SD of median TTFT within one start: {sd * 100:.1f} %"))
        print(tabulate(drift(entry, use_runs), headers=["session", "rounds", "A1 TTFT median ms", "within: round SD",
                                              "A2/A1 [99 %] (start-to-start)", "SD of A2/A1 per round",
                                              "B/A1 [99 %] (+5 % injected)"],
                       tablefmt="simple"))
        short = [s for s, sides in session_rounds(entry, use_runs).items() if len(sides["A1"]) < looks[-1]]
        if short:
            print(f"  note: session(s) {short} have fewer rounds than the budget ({looks[-1]}): rounds drawn with "
                  f"replacement there, which overstates false alarms (duplicated rounds)")
        noise = stats.paired_noise(aa_log_ratios(entry, use_runs))     # A2/A1 per round, all sessions
        print("  " + resolution_line(noise, looks))
        r = rates(entry, looks, reps, seed, use_runs)
        lo, hi = wilson(r["false_alarm"] * reps, reps)
        plo, phi = wilson(r["power"] * reps, reps)
        print(f"  A/A verdicts {r['counts']['A/A']}: false alarm {r['false_alarm'] * 100:.1f} % "
              f"[{lo * 100:.1f}, {hi * 100:.1f}]")
        print(f"  A/B verdicts {r['counts']['A/B +5%']}: power {r['power'] * 100:.1f} % [{plo * 100:.1f}, {phi * 100:.1f}]")
        power = r["power"]
        modelled = model_power(noise, looks)
        if modelled is not None:
            print(f"  power for +5 % at the measured A/A noise (stats.power_at): {modelled * 100:.1f} %")
        if not can_resample(entry, looks, use_runs):
            print(f"  caution: fewer than {2 * looks[-1]} rounds per session for a budget of {looks[-1]}: the resampled "
                  f"decisions above are one A/B repeated, not rates; the bar line takes the modelled power")
            power = modelled if modelled is not None else power
        print()
        fa_all.append(r["false_alarm"])
        pw_all.append(power)
    return min(pw_all), max(fa_all)


def main(argv: list[str] | None = None) -> int:
    from pytest_disagg.ab.options import DEFAULT_MAX_ROUNDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, nargs="+", help="statistics only, from samples file(s) written by a "
                                                            "collection (sessions of several files are combined)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="collect: cpu (default) or cuda")
    from pytest_disagg.ab.workload import CPU_MODEL

    ap.add_argument("--model", help=f"collect: model fixture (default {CPU_MODEL} on cpu, {GPU_MODEL} on cuda; on a GPU "
                                     "a larger one, e.g. llama-3.2-3b-shape, makes TTFT GPU work rather than host "
                                     "overhead)")
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
        collect(args.collect_to, mediums, plan, device=args.device, gpus=gpus, first_session=args.first_session,
                fresh=args.fresh, model=args.model, runs_per_round=args.runs_per_round)
        paths = [args.collect_to]
    else:
        paths = args.samples
    try:
        data = load_all(paths)
    except SamplesFileError as exc:
        print(f"ab_power: {exc}", file=sys.stderr)
        return 2
    power, false_alarm = statistics(data, reps=args.reps, seed=args.seed, max_rounds=args.max_rounds,
                                    use_runs=args.use_runs)
    print(f"ab_power_5pct={power:.3f} ab_false_alarm={false_alarm:.3f} rounds={args.max_rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
