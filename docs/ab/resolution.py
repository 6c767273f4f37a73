"""Usage: python docs/ab/resolution.py RESULTS.json ... (from the project root, pytest-disagg importable).

What the rounds of a committed A/B could resolve, recomputed from its runs with the A/B rule
(``decide``: round medians per side, B/A per round): TTFT and TPOT, one line per pair."""
import json
import sys

from pytest_disagg.ab.decide import decide


def round_samples(runs: list[dict], indices: list[int], metric: str) -> list[list[float]]:
    by_round: dict[int, list[float]] = {}
    for i in indices:
        by_round.setdefault(runs[i]["ab_round"], []).extend(runs[i]["samples"][metric])
    return [by_round[k] for k in sorted(by_round)]


for path in sys.argv[1:]:
    doc = json.load(open(path))
    for pair in doc.get("ab", []):
        if pair["metric"] not in ("ttft_ms", "tpot_ms"):
            continue
        a = round_samples(doc["runs"], pair["a_runs"], pair["metric"])
        b = round_samples(doc["runs"], pair["b_runs"], pair["metric"])
        v = decide(pair["metric"], pair["direction"], a, b, looks=len(pair["looks"]))
        resolves = "nothing" if v.resolves is None else f">= {v.resolves:.1%}"
        print(f"{path}: {pair['deployment']} {v.metric} {v.verdict} B/A {v.ratio:.3f} [{v.lo:.3f}, {v.hi:.3f}] "
              f"after {v.rounds} rounds; round-to-round SD {v.noise:.1%}, resolves {resolves}, "
              f"5 % needs ~{v.rounds_needed} rounds")
