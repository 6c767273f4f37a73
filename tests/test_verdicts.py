"""The verdict vocabulary and its one decision rule."""
import pytest

from pytest_disagg import verdicts as V


def test_words_ranked_worst_first():
    assert V.WORDS == ("regressed", "invalid", "undecided", "not compared", "improved", "same")
    assert V.worst(["same", "improved", "undecided"]) == "undecided"
    assert V.worst(["same", "not compared"]) == "not compared"
    assert V.worst(["improved", "regressed", "invalid"]) == "regressed"
    assert V.worst([]) == "not compared" and V.worst([], empty="-") == "-"


def test_old_gate_words_map_onto_the_vocabulary():
    assert [V.normalize(w) for w in ("regression", "inconclusive", "ok", "improvement", "missing", "new",
                                     "mismatch", "candidate")] == [
        "regressed", "undecided", "same", "improved", "not compared", "not compared", "not compared", "not compared"]
    # the fault: summary said inconclusive, table improvement; one ranking now
    assert V.worst(["improvement", "inconclusive"]) == "undecided"
    with pytest.raises(V.VerdictError, match="unknown verdict 'meh'"):
        V.normalize("meh")


@pytest.mark.parametrize("direction,lo,hi,word", [
    ("lower", 1.06, 1.20, "regressed"),
    ("lower", 0.80, 0.90, "improved"),
    ("lower", 0.97, 1.04, "same"),
    ("lower", 1.02, 1.08, "undecided"),     # straddles the upper bound
    ("lower", 0.90, 0.99, "undecided"),     # straddles the lower bound
    ("higher", 0.80, 0.90, "regressed"),    # throughput down
    ("higher", 1.06, 1.20, "improved"),
])
def test_decide(direction, lo, hi, word):
    assert V.decide(direction, 0.05, lo, hi) == word


def test_a_shift_inside_the_tolerance_is_never_called():
    """Whatever the interval's width, a point estimate inside the band cannot be regressed/improved."""
    for centre in (0.88, 0.95, 1.0, 1.05, 1.14):
        for half in (0.0, 0.001, 0.02, 0.1, 0.3):
            word = V.decide("lower", 0.15, centre - half, centre + half)
            assert word in ("same", "undecided"), (centre, half, word)


def test_decide_rejects_bad_input():
    with pytest.raises(V.VerdictError, match="tolerance"):
        V.decide("lower", 1.5, 1.0, 1.0)
    with pytest.raises(V.VerdictError, match="direction"):
        V.decide("sideways", 0.1, 1.0, 1.0)
    with pytest.raises(V.VerdictError, match="ordered"):
        V.decide("lower", 0.1, 1.2, 1.0)
