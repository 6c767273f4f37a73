"""The one verdict vocabulary: every comparison the suite makes ends in one of six words.

Why one module: the stored-baseline gate, the A/B verdict, the results JSON, the terminal table
and the report used to rank their own words differently (a result was "inconclusive" in the
summary and "improvement" in the table). Every place now takes its word and its ranking from here.

Words, worst first (:data:`WORDS` is that order; :func:`worst` is the one-word summary):

- ``regressed``   the change is beyond the tolerance on the worse side, with confidence;
- ``invalid``     the run cannot be judged (failed requests, a broken measurement: validity rules);
- ``undecided``   the data can neither show nor rule out a change of the tolerance's size;
- ``not compared`` nothing to compare with (no baseline yet, another subject, a metric on one side);
- ``improved``    the change is beyond the tolerance on the better side, with confidence;
- ``same``        the whole confidence interval lies inside the tolerance band.

The decision rule (:func:`decide`) is shared too: a tolerance band is honoured, so a shift whose
interval reaches into the band is never ``regressed`` or ``improved``.
"""
from __future__ import annotations

from typing import Iterable

REGRESSED = "regressed"
INVALID = "invalid"
UNDECIDED = "undecided"
NOT_COMPARED = "not compared"
IMPROVED = "improved"
SAME = "same"

WORDS = (REGRESSED, INVALID, UNDECIDED, NOT_COMPARED, IMPROVED, SAME)   # worst first
_RANK = {word: i for i, word in enumerate(WORDS)}

# Words of older results / baselines (the gate's own words before this vocabulary) → the vocabulary.
LEGACY = {
    "regression": REGRESSED,
    "inconclusive": UNDECIDED,
    "ok": SAME,
    "improvement": IMPROVED,
    "missing": NOT_COMPARED,
    "new": NOT_COMPARED,
    "mismatch": NOT_COMPARED,
    "candidate": NOT_COMPARED,
}


class VerdictError(ValueError):
    """A word that is neither in the vocabulary nor a known older spelling."""


def normalize(word: str) -> str:
    """The vocabulary's word for ``word`` (older gate words are mapped; unknown words are an error)."""
    if word in _RANK:
        return word
    if word in LEGACY:
        return LEGACY[word]
    raise VerdictError(f"unknown verdict {word!r}; the words are {', '.join(WORDS)}")


def rank(word: str) -> int:
    """0 for the worst word (``regressed``), len(WORDS) - 1 for the best (``same``)."""
    return _RANK[normalize(word)]


def worst(words: Iterable[str], empty: str = NOT_COMPARED) -> str:
    """The one-word summary of a set of verdicts: the worst of them (``empty`` if there are none)."""
    normalized = [normalize(w) for w in words]
    return min(normalized, key=_RANK.__getitem__) if normalized else empty


def failed(word: str) -> bool:
    """Whether the word fails a gate (only ``regressed`` does; ``invalid`` is the validity rules' call)."""
    return normalize(word) == REGRESSED


DEFAULT_FAIL_ON = frozenset({REGRESSED})


def parse_fail_on(text: str | None, option: str = "--fail-on") -> frozenset[str]:
    """The words that make a comparison command exit non-zero: comma-separated words of the
    vocabulary (older spellings accepted), ``none`` for none; default ``regressed``, the word that
    fails a gate (:func:`failed`). One rule for every command that compares (``baselines diff``,
    ``compare``), so that their exit codes agree (:data:`EXIT_FAILED`)."""
    if text is None or not text.strip():
        return DEFAULT_FAIL_ON
    if text.strip() == "none":
        return frozenset()
    words = set()
    for part in text.split(","):
        try:
            words.add(normalize(part.strip()))
        except VerdictError:
            raise VerdictError(f"{option}={text!r}: {part.strip()!r} is not a verdict; give words of "
                               f"{', '.join(WORDS)} (comma-separated) or none") from None
    return frozenset(words)


# The exit rule of every command that compares (``baselines diff``, ``compare``), so that a CI
# step reads them alike: nothing failed; a row's word is one of ``--fail-on``; bad input (a file,
# id or option the command cannot use; nothing was compared).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def failing(words: Iterable[str], fail_on: frozenset[str]) -> str | None:
    """Why a comparison whose rows say ``words`` fails under ``fail_on`` (one line), or None."""
    hits = [w for w in words if w in fail_on]
    if not hits:
        return None
    return (f"{len(hits)} row(s) say {', '.join(sorted(set(hits)))} (--fail-on {','.join(sorted(fail_on))}; "
            "--fail-on none never fails)")


def badness(direction: str, ratio: float) -> float:
    """The ratio new/old turned so that > 1 means worse, whichever way the metric points."""
    if direction == "lower":
        return ratio
    if direction == "higher":
        return 1.0 / ratio if ratio > 0 else float("inf")
    raise VerdictError(f"direction must be 'lower' or 'higher', got {direction!r}")


def decide(direction: str, tolerance: float, lo: float, hi: float) -> str:
    """The verdict for a confidence interval ``[lo, hi]`` of the ratio new/old (B/A, now/baseline).

    The tolerance band is ``[1/(1 + t), 1 + t]`` in the "badness" ratio (symmetric on a log scale,
    so a +t slowdown and the speed-up that undoes it are judged alike):

    - interval entirely above ``1 + t``: ``regressed``; entirely below ``1/(1 + t)``: ``improved``;
    - interval entirely inside the band: ``same``;
    - anything else (it straddles a bound): ``undecided``.

    So a change is called only when it is both significant and larger than the tolerance; a point
    estimate inside the band can never be ``regressed`` or ``improved``. A point value (no CI) is
    ``lo == hi``.
    """
    if not 0.0 <= tolerance < 1.0:
        raise VerdictError(f"tolerance is a fraction in [0, 1), got {tolerance}")
    if not lo <= hi:
        raise VerdictError(f"interval [{lo}, {hi}] is not ordered")
    worse_lo, worse_hi = sorted((badness(direction, lo), badness(direction, hi)))
    upper, lower = 1.0 + tolerance, 1.0 / (1.0 + tolerance)
    if worse_lo > upper:
        return REGRESSED
    if worse_hi < lower:
        return IMPROVED
    if lower <= worse_lo and worse_hi <= upper:
        return SAME
    return UNDECIDED


__all__ = ["DEFAULT_FAIL_ON", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "IMPROVED", "INVALID", "LEGACY", "NOT_COMPARED", "REGRESSED", "SAME", "UNDECIDED",
           "WORDS", "VerdictError", "badness", "decide", "failed", "failing", "normalize", "parse_fail_on", "rank", "worst"]
