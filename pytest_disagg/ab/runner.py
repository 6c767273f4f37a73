"""A/B rounds on real deployments: what ``disagg_bench.run`` does when ``--disagg-ab`` is given.

Per call: side B's configuration is side A's with B's interpreter, environment and extra server
arguments; rounds run the workload on both sides in ``decide.round_order`` (each round with its
own seed, the same for both sides, so that a round's two runs send the same requests and
prefix caches never see a repeated prompt across rounds; with ``--disagg-ab-runs-per-round`` N,
a round runs each side N times, A B B A ..., on the round's deployments, and pools them: that
averages the host's moment, not the start-to-start offset, which fresh rounds turn into noise —
measured in README); at each planned look every metric is
decided and, while one is undecided, rounds are added up to ``--disagg-ab-max-rounds``. Every run
lands in the results JSON tagged with its side and round; the pair and its verdicts go to the
results JSON's ``ab`` section through ``SessionResults.add_ab_pair`` (checked like every section)
and to ``ABSession.pairs`` (the terminal table). A ``regressed`` verdict fails the test.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from .. import verdicts as words
from ..bench import Bench, run_fingerprint
from ..deploy.pytest_plugin import announced_get
from ..measure import measured_run
from ..metrics import METRICS
from .decide import CONFIDENCE, SAME_BAND, Sequential, round_order
from .options import ABOptions

# Per-request metrics decided from each round's median, and run-level figures (one per round);
# energy per token only where the session measures energy (an NVML meter: GPUs).
REQUEST_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms")
RUN_METRICS = ("output_throughput", "request_throughput", "energy_j_per_token")
AB_METRICS = REQUEST_METRICS + RUN_METRICS


@dataclass
class ABSession:
    """The session's A/B state: options, both sides' fingerprints, and every pair decided."""

    options: ABOptions
    probe: dict | None                      # side B's interpreter probe (None: same interpreter)
    fingerprints: dict[str, dict] = field(default_factory=dict)     # "A" / "B" -> fingerprint
    pairs: list[dict] = field(default_factory=list)

    def side_b(self, config):
        """Side B's DeploymentConfig for side A's."""
        o = self.options
        return replace(config, python=o.python, server_env=tuple(config.server_env) + o.env,
                       extra_server_args=tuple(config.extra_server_args) + o.server_args,
                       variant=(config.variant + "-B") if config.variant else "B")

    def describe_side(self, side: str) -> dict:
        o = self.options
        if side == "A":
            return {"python": sys.executable, "env": {}, "server_args": []}
        return {"python": o.python or sys.executable, "env": dict(o.env), "server_args": list(o.server_args)}

    def setup_json(self) -> dict:
        """What the session compared (the results JSON's ``options.ab``): options, both sides."""
        return {**self.options.describe(),
                "sides": {s: {**self.describe_side(s), "fingerprint": self.fingerprints.get(s, {})} for s in "AB"}}

    def verdict(self) -> str:
        return words.worst([p["verdict"] for p in self.pairs])


def side_a_config(config, session: ABSession, pool):
    """The config side A runs on: on GPUs, where both sides stay up between rounds, each takes half
    the memory it would take alone (a side started with all of it leaves the other none)."""
    both_up = not session.options.fresh_for(config.device) or session.options.runs_per_round > 1
    return pool.sharing_gpus(config, 2) if both_up else config


def round_figures(run) -> dict[str, list[float]]:
    """What one run contributes to a round, per metric: per-request samples, or the run's figure."""
    samples, scalars = run.samples(), run.scalars()
    out = {m: list(samples[m]) for m in REQUEST_METRICS if m in samples and len(samples[m])}
    out.update({m: [float(scalars[m])] for m in RUN_METRICS if m in scalars and scalars[m] is not None})
    return out


def round_runs(order: tuple[str, str], runs_per_round: int) -> list[tuple[int, str]]:
    """(run, side) in a round's time order: ``order``, then reversed, ... (A B B A A B ...), so
    that over a round's runs neither side is always first."""
    out = []
    for rep in range(runs_per_round):
        out += [(rep, side) for side in (order if rep % 2 == 0 else order[::-1])]
    return out


def round_seed(seed: int, k: int, rep: int) -> int:
    """One seed per round and run, the same on both sides (a round's A and B runs send the same
    requests; no run repeats a prompt of another, so prefix caches never see one twice)."""
    return seed * 1000 + k + 1000 * rep


class ABBench(Bench):
    """``disagg_bench`` under ``--disagg-ab``: ``run`` runs rounds on A and B (:func:`run_ab`) and
    returns side A's last round's (run, entry), not gated; the rest is :class:`~pytest_disagg.bench.Bench`'s."""

    def __init__(self, request, results, baseline, meter, *, session: ABSession, pool):
        super().__init__(request, results, baseline, meter)
        self.session = session
        self.pool = pool

    def run(self, deployment, spec, *, benchmark: str, load: str, name: str | None = None,
            extra: dict | None = None, gate: bool = True):
        return run_ab(self, deployment, spec, session=self.session, pool=self.pool, benchmark=benchmark,
                      load=load, name=name or f"{benchmark}[{load}]", extra=extra)


def run_ab(bench, deployment, spec, *, session: ABSession, pool, benchmark: str, load: str,
           name: str, extra: dict | None = None):
    """Rounds of ``spec`` on A (``deployment``'s config) and B; returns side A's last (run, entry)."""
    cfg = {"A": deployment.config, "B": session.side_b(deployment.config)}
    fresh = session.options.fresh_for(deployment.config.device)
    runs_per_round = session.options.runs_per_round
    if not fresh or runs_per_round > 1:
        pool.max_live = max(pool.max_live, 2)       # both sides stay up between rounds, or a round's runs
    looks = session.options.looks()
    seq: Sequential | None = None        # made on the first round: the metrics both sides measure
    results = bench.results
    indices: list[int] = []
    keys: dict[str, str] = {}
    last: dict[str, Any] = {}
    for k, order in enumerate(round_order(looks[-1])):
        figures: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
        for rep, side in round_runs(order, runs_per_round):
            dep = announced_get(pool, cfg[side], f"{cfg[side].key()} (A/B round {k + 1}, side {side})")
            keys[side] = dep.key
            round_spec = dataclasses.replace(spec, seed=round_seed(spec.seed, k, rep))
            with pool.others_paused(dep):      # the other side's servers too, when both stay up
                run = measured_run(dep, round_spec, meter=bench.meter)
            tags = {"ab_round": k, **({"ab_run": rep} if runs_per_round > 1 else {})}
            entry = results.add_run(benchmark=benchmark, test=bench.request.node.nodeid, deployment=dep, run=run,
                                    load=load, extra={**(extra or {}), **tags}, side=side,
                                    fingerprint=run_fingerprint(session.fingerprints.get(side) or {}, dep,
                                                                 round_spec.to_json()))
            entry.update(tags)
            indices.append(len(results.runs) - 1)
            run.check_failures()
            for metric, values in round_figures(run).items():
                figures[side].setdefault(metric, []).extend(values)
            last[side] = (run, entry)
        if seq is None:
            seq = Sequential({m: METRICS[m].direction for m in AB_METRICS if figures["A"].get(m) and figures["B"].get(m)},
                             looks)
        seq.add_round(figures["A"], figures["B"])
        if fresh:
            for side in "AB":
                pool.release(cfg[side])
        if seq.look():
            break
    assert seq is not None
    sides_of = {"A": [i for i in indices if results.runs[i].get("side") == "A"],
                "B": [i for i in indices if results.runs[i].get("side") == "B"]}
    pairs = [results.add_ab_pair(pair_entry(v, benchmark=benchmark, name=name, test=bench.request.node.nodeid,
                                            load=load, keys=keys, runs=sides_of, fresh=fresh, looks=seq.looks,
                                            session=session)) for v in seq.verdicts.values()]
    session.pairs += pairs
    worst = words.worst([p["verdict"] for p in pairs])
    if worst == words.REGRESSED:
        bad = ", ".join(f"{m} B/A {v.ratio:.3f} [{v.lo:.3f}, {v.hi:.3f}]" for m, v in seq.verdicts.items()
                        if v.verdict == words.REGRESSED)
        pytest.fail(f"A/B {name} on {keys.get('A')}: B regressed after {seq.rounds} rounds: {bad}", pytrace=False)
    return last["A"]


def pair_entry(v, *, benchmark, name, test, load, keys, runs, fresh, looks, session) -> dict:
    """One metric's A/B comparison in the results JSON's ``ab`` list (shape: ``results.py``)."""
    return {"benchmark": benchmark, "name": name, "test": test, "load": load, "deployment": keys.get("A"),
            "deployment_b": keys.get("B"), "metric": v.metric, "direction": v.direction, "rounds": v.rounds,
            "a_runs": runs["A"], "b_runs": runs["B"], "ratio": v.ratio,
            "ci": None if v.lo is None else [v.lo, v.hi], "confidence": CONFIDENCE, "tolerance": SAME_BAND,
            "p": v.p, "level": v.level, "a_median": v.a_median, "b_median": v.b_median, "reason": v.reason,
            "verdict": v.verdict, "fresh": fresh, "looks": list(looks),
            "noise": v.noise, "resolves": v.resolves, "rounds_needed": v.rounds_needed,
            "fingerprint_a": session.fingerprints.get("A", {}), "fingerprint_b": session.fingerprints.get("B", {})}

