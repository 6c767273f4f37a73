"""Live progress: plain milestone lines off a terminal, one rewritten status line on one, nothing
under -q; written through pytest's terminal reporter so that capture does not swallow it."""
from __future__ import annotations

import pytest

from pytest_disagg import progress

BODY = """
from pytest_disagg import progress

def test_run():
    run = progress.current().run("poisson 8 req", 8)
    for _ in range(8):
        run.advance()
    run.close()
    with progress.current().starting("colocated-pc0"):
        pass

def test_start_fails():
    try:
        with progress.current().starting("nixl-cpu-pc0"):
            raise RuntimeError("server exited\\nlog line 1\\nlast log line")
    except RuntimeError:
        pass
"""


def test_plain_lines_reach_the_terminal_despite_capture(pytester):
    pytester.makepyfile(test_p=BODY)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    for line in ("disagg: poisson 8 req: 0/8 requests", "disagg: poisson 8 req: 4/8 requests",
                 "disagg: starting colocated-pc0",
                 "disagg: colocated-pc0 ready in 0 s", "disagg: nixl-cpu-pc0 did not come up after 0 s:",
                 "last log line"):
        assert line in out, (line, out)
    assert "8/8 requests" in out and "(done)" in out and "\r" not in out      # not a TTY: plain lines
    assert "2/8 requests" not in out                                       # milestones only


def test_quiet_under_minus_q(pytester):
    pytester.makepyfile(test_p=BODY)
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=2)
    assert "disagg:" not in result.stdout.str()


def test_a_terminal_gets_one_rewritten_status_line():
    lines, statuses = [], []
    now = [0.0]
    p = progress.Progress(lines.append, statuses.append, clock=lambda: now[0])
    run = p.run("r", 4)
    for _ in range(4):
        now[0] += 1.0
        run.advance()
    run.close()
    assert statuses[0] == "disagg: r: 0/4 requests, 0 s" and "disagg: r: 4/4 requests, 4 s" in statuses
    assert lines == ["disagg: r: 4/4 requests, 4 s (done)"] and statuses[-1] == ""   # cleared before the line


def test_redraws_are_throttled_on_a_terminal():
    statuses = []
    p = progress.Progress(lambda t: None, statuses.append, clock=lambda: 5.0)   # no time passes
    run = p.run("r", 100)
    for _ in range(100):
        run.advance()
    assert len(statuses) == 1


def test_outside_pytest_silent_without_a_terminal(monkeypatch):
    import io

    monkeypatch.setattr(progress, "_current", None)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress.current().enabled
