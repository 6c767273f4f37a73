"""Re-judge this example's saturation flags with the current queue-growth rule, from its own data.

Why: the session of 2026-12-02 flagged colocated `saturated` at 5.7, 11 and 18 req/s but valid at
25-56 req/s. Its rule compared the first and last quarter's median TTFT, and in those three runs
a host stall (a cluster of requests held 150-800 ms; vLLM's own queue time ~1 ms per run) fell in
the last quarter, while the same stall mid-run at 7.2, 9.9 and 13 req/s passed.
``validity.queue_growth`` now asks that the queue stay built through the end. Each run keeps its
TTFT samples in send order and its completion ratio, so the rule can be applied again here; the
other reasons (token bursts, client lag) are kept as recorded, and the crossover entries are
recomputed over the valid runs (``sweep.crossover_entry``, as tests/benchmarks/test_load_sweep.py).

    python docs/example-report/rejudge.py docs/example-report/results.json
    pytest-disagg report docs/example-report/results.json --out docs/example-report
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_disagg import validity
from pytest_disagg.sweep import crossover_entry

METRICS = ("tpot_ms", "ttft_ms", "e2el_ms")
NOTE = "re-judged after the session by docs/example-report/rejudge.py (queue growth must last to the end): not gated"


def rejudge(run: dict) -> bool:
    """Apply the current saturation rule to one run; True when its flags changed."""
    figures, ttft = run.get("validity_figures") or {}, (run.get("samples") or {}).get("ttft_ms")
    if not ttft or "achieved_ratio" not in figures or run.get("n_failed"):
        return False
    grew, queue = validity.queue_growth(ttft)
    short = figures["achieved_ratio"] < validity.SATURATED_RATIO
    others = [r for r in run.get("invalid_reasons") or [] if r != "saturated"]
    reasons = others + (["saturated"] if grew or short else [])
    figures.update(queue)
    if reasons == list(run.get("invalid_reasons") or []):
        return False
    details = [d for d in run.get("invalid_details") or [] if not d.startswith("saturated")]
    run.update(valid=not reasons, invalid_reasons=reasons, invalid_details=details,
               validity="yes" if not reasons else "no: " + ", ".join(reasons))
    if not reasons:
        run.update(gate="not compared", verdicts=[{"metric": "*", "verdict": "not compared", "reason": NOTE}])
    return True


def curves(runs: list[dict], medium: str, prefix_caching: bool) -> dict[str, dict[float, list[float]]]:
    """metric -> {rate: samples} of the medium's valid load-sweep runs."""
    out: dict[str, dict[float, list[float]]] = {m: {} for m in METRICS}
    for run in runs:
        rate = (run.get("extra") or {}).get("rate")
        if (run["benchmark"] == "load-sweep" and run.get("medium") == medium and run.get("valid")
                and bool(run.get("prefix_caching")) == prefix_caching and rate is not None):
            for m in METRICS:
                out[m][float(rate)] = run["samples"][m]
    return out


def main(path: str) -> None:
    doc = json.loads(Path(path).read_text())
    changed = [f"{r['setup']} {r['load']}" for r in doc["runs"] if rejudge(r)]
    for medium, entry in (doc.get("derived") or {}).get("crossover", {}).items():
        pc = bool(entry.get("prefix_caching"))
        new = crossover_entry(medium, curves(doc["runs"], "colocated", pc), curves(doc["runs"], medium, pc),
                              metrics=METRICS)
        rates = {m: v.get("rates") for m, v in (entry.get("by_metric") or {}).items()}
        if rates != {m: v.get("rates") for m, v in new["by_metric"].items()}:   # else: as the session wrote it
            doc["derived"]["crossover"][medium] = {**new, "deployment": entry.get("deployment"), "prefix_caching": pc}
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"re-judged {len(changed)} run(s): {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1])
