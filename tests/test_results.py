"""results.py owns the JSON shape: schema 2, verdict words, old files upgraded on reading."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_disagg import results as R

DOCS = Path(__file__).resolve().parent.parent / "docs"


SCHEMA_1_FILES = {"example-report": Path(__file__).resolve().parent / "data" / "schema1-example-results.json",
                  "gpu-report": DOCS / "gpu-report" / "results.json"}


@pytest.mark.parametrize("name", sorted(SCHEMA_1_FILES))
def test_committed_schema_1_results_are_read_in_the_current_shape(name):
    """Files written before schema 2 (the example report of the second landing, kept as test data)."""
    path = SCHEMA_1_FILES[name]
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1
    data = R.load_results(path)
    assert data["schema_version"] == R.SCHEMA_VERSION and data["upgraded_from"] == 1 and data["ab"] == []
    for run in data["runs"]:
        assert run["fingerprint"] == {} and run["valid"] is True
        assert all(v["verdict"] in R.words.WORDS for v in run["verdicts"])
        assert run["gate"] in (*R.words.WORDS, "-")
        energy = run.get("energy")
        if isinstance(energy, dict):
            assert "by_component" not in energy and "per_component" not in energy and "j_per_token" not in energy
    assert json.loads(path.read_text()) == raw          # reading never edits the file


def test_schema_1_candidate_and_old_words_are_mapped():
    doc = {"schema_version": 1, "runs": [{"benchmark": "b", "setup": "s", "gate": "improvement",
                                          "verdicts": [{"metric": "ttft_ms", "verdict": "improvement"},
                                                       {"metric": "tpot_ms", "verdict": "inconclusive"}],
                                          "energy": {"by_component": {"gpu": {"joules": 1.0}}, "j_per_token": 0.5}}]}
    run = R.upgrade(doc)["runs"][0]
    assert [v["verdict"] for v in run["verdicts"]] == ["improved", "undecided"]
    assert run["gate"] == "undecided"                   # one ranking: undecided is worse than improved
    assert run["energy"] == {"components": {"gpu": {"joules": 1.0}}, "joules_per_token": 0.5}


def test_unknown_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 9, "runs": []}))
    with pytest.raises(ValueError, match=r"not a pytest-disagg results file of schema 1 or 2 \(schema_version=9\)"):
        R.load_results(path)


def test_gate_word_and_set_verdicts_use_the_vocabulary():
    results = R.SessionResults()
    entry = {"verdicts": []}
    results.set_verdicts(entry, [{"metric": "a", "verdict": "same"}, {"metric": "b", "verdict": "regression"}])
    assert entry["gate"] == "regressed" and entry["verdicts"][1]["verdict"] == "regressed"
    assert R.gate_word([]) == "-"


def test_ab_pairs_are_checked():
    results = R.SessionResults()
    pair = results.add_ab_pair({"benchmark": "b", "deployment": "colocated-pc0", "metric": "ttft_ms", "ratio": 1.02,
                                "ci": [0.99, 1.05], "verdict": "same"})
    assert results.to_json()["ab"] == [pair]
    with pytest.raises(R.ResultsError, match="lacks ratio, ci, verdict"):
        results.add_ab_pair({"benchmark": "b", "deployment": "d", "metric": "m"})
    with pytest.raises(ValueError, match="unknown verdict"):
        results.add_ab_pair({**pair, "verdict": "fine"})
