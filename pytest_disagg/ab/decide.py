"""The A/B verdict per metric, Pinpoint-style, over rounds.

A *round* is one run of the workload on each side (A then B, or B then A: ``round_order``), both
sending the same requests (one seed per round). For a metric, each round gives one figure per
side (the median of its per-request samples, or the run's figure for throughputs) and so one
log ratio B/A; the verdict of ``decide`` is:

- ``regressed`` / ``improved``: the sides differ — the two-sided Wilcoxon signed-rank p over the
  rounds' log ratios is at most ``alpha`` split over every planned look (Bonferroni: the rounds
  are looked at more than once, so the per-look level is ``alpha / looks``) *and* the B/A
  interval (Hodges-Lehmann, the signed-rank test inverted: ``stats.hodges_lehmann_ratio``) lies on
  one side of 1;
- ``same``: that interval lies inside ``1 ± same_band`` (the effect-size threshold: a change
  smaller than that is not worth a verdict);
- ``undecided`` otherwise; the runner then adds rounds up to the budget.

Why paired ranks: rounds, not requests, are the unit — requests of one run share its deployment's
state and the host's moment, so testing them as independent would call drift a regression. Pairing
the two runs of a round cancels what the round's moment does to both sides. And ranks: on the
2-core box a quiet run's median TTFT moves ~5 % while a run the host disturbs moves 2-7x (either
side), so a mean or a pooled median lets one such round decide; a rank gives it one vote. The
test is exact for exchangeable pairs; its price is a floor on p of 2 / 2^rounds, so the first look
that can call a change is at 10 rounds (0.0020 against a level of 0.01 / 2 looks at the default
budget of 12); ``same`` can be called at any look. Measured rates: ``benchmarks/ab_power.py``.

Every verdict also carries its *resolution* (``resolution``): the rounds' round-to-round noise, the
smallest change they would call with 95 % power, and the rounds a 5 % change would need. An
``undecided`` verdict is otherwise a dead end; with it the user can tell "no difference worth a
verdict yet" from "this machine cannot see 5 % in any budget I would pay for" (on the 2-core box a
fresh start lands ~5-8 % off the last one, and a 5 % change takes ~180-350 rounds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .. import stats
from ..verdicts import IMPROVED, REGRESSED, SAME, UNDECIDED
from .options import MIN_ROUNDS, looks_for

ALPHA = 0.01            # family level of one metric's verdict over all its looks
SAME_BAND = 0.025       # |B/A - 1| below this, with confidence, is "same" (half the 5 % to detect)
CONFIDENCE = 0.99
TARGET_CHANGE = 2 * SAME_BAND   # the change the rule is meant to catch (5 %)
POWER = 0.95


def round_order(n_rounds: int) -> list[tuple[str, str]]:
    """Side order per round, alternating (A B, B A, A B ...): A, B, B, A, A, B ... so that neither
    side always runs first and a linear drift of the host hits both sides alike."""
    return [("A", "B") if k % 2 == 0 else ("B", "A") for k in range(n_rounds)]


@dataclass(frozen=True)
class Verdict:
    metric: str
    direction: str
    verdict: str
    rounds: int
    ratio: float | None = None
    lo: float | None = None
    hi: float | None = None
    p: float | None = None
    level: float | None = None
    a_median: float | None = None
    b_median: float | None = None
    reason: str = ""
    noise: float | None = None           # round-to-round SD of log B/A
    resolves: float | None = None        # smallest change these rounds call with POWER (0.15 = 15 %),
                                         # planned with the noise's upper bound (``resolution``)
    rounds_needed: int | None = None     # rounds that would call TARGET_CHANGE with POWER, at this noise

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def round_figures(rounds: Sequence[Sequence[float]]) -> np.ndarray:
    return np.array([float(np.median(r)) for r in rounds])


def p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact signed-rank p over the rounds' log ratios log(b_k / a_k)."""
    return stats.signed_rank_p(stats.paired_log_ratios(a, b))


def level(looks: int, alpha: float = ALPHA) -> float:
    return alpha / max(1, looks)


def decide(metric: str, direction: str, a_rounds: Sequence[Sequence[float]], b_rounds: Sequence[Sequence[float]], *,
           looks: int, alpha: float = ALPHA, same_band: float = SAME_BAND, confidence: float = CONFIDENCE) -> Verdict:
    """The verdict of one metric from its per-round samples of each side (rounds paired in order)."""
    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
    n = min(len(a_rounds), len(b_rounds))
    if n < 2:
        return Verdict(metric, direction, UNDECIDED, n, reason=f"{n} round(s) per side: nothing to test")
    a_rounds, b_rounds = list(a_rounds)[:n], list(b_rounds)[:n]
    a, b = round_figures(a_rounds), round_figures(b_rounds)
    base = dict(metric=metric, direction=direction, rounds=n,
                a_median=float(np.median(np.concatenate([np.asarray(r, float) for r in a_rounds]))),
                b_median=float(np.median(np.concatenate([np.asarray(r, float) for r in b_rounds]))))
    if (a <= 0).any() or (b <= 0).any():
        return Verdict(verdict=UNDECIDED, reason="a round figure is 0: no ratio to test", **base)
    d = stats.paired_log_ratios(a, b)
    ratio, lo, hi = stats.hodges_lehmann_ratio(d, confidence)
    p = stats.signed_rank_p(d)
    lvl = level(looks, alpha)
    base.update(ratio=ratio, lo=lo, hi=hi, p=p, level=lvl, **resolution(d, lvl, alpha))
    if p <= lvl and (lo > 1.0 or hi < 1.0):
        worse = (lo > 1.0) == (direction == "lower")
        return Verdict(verdict=REGRESSED if worse else IMPROVED,
                       reason=f"p={p:.2g} <= {lvl:.2g} and the interval excludes 1", **base)
    if 1.0 - same_band <= lo and hi <= 1.0 + same_band:
        return Verdict(verdict=SAME, reason=f"interval inside 1 ± {same_band:g}", **base)
    return Verdict(verdict=UNDECIDED, reason=f"p={p:.2g} > {lvl:.2g} or interval reaches 1, "
                                             f"and interval not inside 1 ± {same_band:g}", **base)


def resolution_text(v: Mapping) -> str:
    """Why a verdict is undecided, in terms a user can act on (``v``: a Verdict's or pair's JSON)."""
    if v.get("noise") is None:
        return ""
    can = f"changes >= {v['resolves']:.0%}" if v.get("resolves") is not None else "no change yet"
    need = (f"about {v['rounds_needed']} rounds (--disagg-ab-max-rounds)" if v.get("rounds_needed")
            else "more rounds than any budget")
    return (f"{v['metric']}: B/A moves {v['noise']:.1%} (SD) from round to round, so {v['rounds']} rounds resolve {can} "
            f"({POWER:.0%} power); {TARGET_CHANGE:.0%} needs {need}")


def resolution(d: np.ndarray, lvl: float, alpha: float = ALPHA, rounds: int | None = None) -> dict:
    """What rounds this noisy can tell apart: the round-to-round SD of the log ratios ``d``
    (``noise``), the smallest change ``rounds`` rounds (default ``len(d)``) call with ``POWER`` at
    this look's level, and the rounds a budget would need for ``TARGET_CHANGE`` (its looks as
    ``options.looks_for`` plans them: more rounds, more looks, a smaller level per look). Both are
    planned with ``stats.noise_bound``, not the SD itself: a verdict's few rounds can understate
    their noise, and the promise is meant to hold over the verdicts that print it (measured:
    ``benchmarks/ab_power.py``'s honesty line). Empty below 4 rounds."""
    noise, bound = stats.paired_sd(d), stats.noise_bound(d)
    if noise is None or bound is None:
        return {}
    return {**resolution_at(bound, d.size if rounds is None else rounds, lvl, alpha), "noise": noise}


def resolution_at(noise: float, rounds: int, lvl: float, alpha: float = ALPHA) -> dict:
    """``resolution`` for a known round-to-round ``noise`` and ``rounds`` rounds at level ``lvl``."""
    needed = stats.rounds_needed(noise, TARGET_CHANGE, lambda n: level(len(looks_for(n)), alpha), POWER)
    needed = None if needed is None else max(needed, MIN_ROUNDS)     # the smallest budget allowed
    resolves = stats.detectable_change(noise, rounds, lvl, POWER)
    return {"noise": noise, "resolves": None if np.isinf(resolves) else resolves, "rounds_needed": needed}


class Sequential:
    """Rounds accumulate; at each planned look every metric is decided; done when none is undecided
    (or the budget is spent). ``metrics`` maps name -> direction."""

    def __init__(self, metrics: Mapping[str, str], looks: Sequence[int], **rule):
        if not looks or list(looks) != sorted(set(looks)):
            raise ValueError(f"looks must be increasing round counts, got {list(looks)!r}")
        self.metrics = dict(metrics)
        self.looks = tuple(looks)
        self.rule = rule
        self.a: dict[str, list] = {m: [] for m in self.metrics}
        self.b: dict[str, list] = {m: [] for m in self.metrics}
        self.verdicts: dict[str, Verdict] = {}

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.a.values()), default=0)

    @property
    def max_rounds(self) -> int:
        return self.looks[-1]

    def add_round(self, a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> None:
        for m in self.metrics:
            if m in a and m in b and len(a[m]) and len(b[m]):
                self.a[m].append(np.asarray(a[m], dtype=float))
                self.b[m].append(np.asarray(b[m], dtype=float))

    def look(self) -> bool:
        """Decide at a planned look; True when the rounds are done (all decided or budget spent)."""
        n = self.rounds
        if n not in self.looks:
            return n >= self.max_rounds
        self.verdicts = {m: decide(m, d, self.a[m], self.b[m], looks=len(self.looks), **self.rule)
                         for m, d in self.metrics.items() if len(self.a[m]) >= 1}
        return n >= self.max_rounds or all(v.verdict != UNDECIDED for v in self.verdicts.values())

