"""Invalid runs and capacity in the report: the table names the reasons, the plot crosses the point
out, the crossover table gives the range of a "none", the capacity table shows probes and spread."""
from __future__ import annotations

import copy
import re

from pytest_disagg.report import build_report
from pytest_disagg.testing import synthetic


def test_invalid_runs_capacity_and_none_in_range_are_shown(tmp_path):
    doc = copy.deepcopy(synthetic.full())
    rate_runs = [r for r in doc["runs"] if (r.get("workload") or {}).get("arrival", {}).get("kind") == "poisson"]
    for r in doc["runs"]:
        r["valid"], r["invalid_reasons"] = True, []
    rate_runs[0].update(valid=False, invalid_reasons=["token-bursts", "saturated"], gate="invalid")
    medium = next(iter(doc["derived"]["crossover"]))
    doc["derived"]["crossover"][medium] = {"medium": medium, "metric": "tpot_ms", "rate": None, "range": [0.25, 1.1],
                                           "direction": "colocated better at every rate"}
    doc["derived"]["capacity"] = {"disk-pc0": {"measured_rps": 8.5, "probes_rps": [8.0, 9.03], "spread": 0.12,
                                               "stable": True, "rates": [2.1, 4.2, 6.8, 9.4], "rates_from": "baseline",
                                               "gate": "same"}}
    page = re.sub(r" +", " ", build_report(doc, tmp_path).read_text())     # markdown tables pad their cells
    assert "**no**: token-bursts, saturated" in page and "| yes |" in page
    assert "none in 0.250–1.10 req/s" in page
    assert "| disk-pc0 | 8.50 | 8.00, 9.03 | 12% | 2.10, 4.20, 6.80, 9.40 | baseline | same |" in page
