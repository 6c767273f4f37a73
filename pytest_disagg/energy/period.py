"""Measure how often an energy counter actually changes, instead of assuming it.

Why: the update period bounds how short a window can be and still mean something, and it varies
by GPU and driver (about 100 ms was seen on an H100 with driver 580). The estimate is the median
interval between observed changes while polling as fast as reads allow; its resolution is the cost
of one read, so that cost is returned beside it.
"""
from __future__ import annotations

import statistics
from typing import Callable

from .results import CounterPeriod


def measure_update_period(
    read: Callable[[], float],
    *,
    gpu: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    changes: int = 5,
    max_seconds: float = 2.0,
    poll_interval_s: float = 0.001,
) -> CounterPeriod:
    """Poll ``read`` until it has changed ``changes`` times (or ``max_seconds`` pass).

    The first change only marks a boundary (the poll started at an arbitrary phase), so
    ``changes`` changes give ``changes - 1`` whole intervals; the median of those is the period.
    """
    if changes < 2:
        raise ValueError("need at least 2 counter changes to see one whole interval")
    if max_seconds <= 0 or poll_interval_s < 0:
        raise ValueError("max_seconds must be > 0 and poll_interval_s >= 0")
    start = clock()
    previous = read()
    change_times: list[float] = []
    reads = 1
    read_time = 0.0
    while len(change_times) < changes:
        before = clock()
        if before - start > max_seconds:
            break
        value = read()
        after = clock()
        reads += 1
        read_time += after - before
        if value != previous:
            change_times.append(after)
            previous = value
        if poll_interval_s:
            sleep(poll_interval_s)
    poll_cost = read_time / max(1, reads - 1)
    method = (
        f"median interval between counter changes, polled every {poll_interval_s * 1e3:.1f} ms "
        f"plus {poll_cost * 1e3:.2f} ms per read"
    )
    intervals = [b - a for a, b in zip(change_times, change_times[1:])]
    if not intervals:
        return CounterPeriod(
            gpu=gpu, period_s=None, changes_seen=len(change_times), poll_cost_s=poll_cost,
            method=method,
            note=f"counter changed {len(change_times)} time(s) in {max_seconds:.1f} s: period unknown",
        )
    return CounterPeriod(
        gpu=gpu, period_s=statistics.median(intervals), changes_seen=len(change_times),
        poll_cost_s=poll_cost, method=method,
    )
