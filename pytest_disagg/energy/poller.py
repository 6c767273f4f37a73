"""A daemon thread that calls one function at a fixed rate, and the window block shared by the
cumulative sources.

Why a module of its own: the NVML sampler, the RAPL poller and the IPMI sampler all need the same
thread (fixed-rate ticks that do not drift, a clean stop, errors counted instead of killing the
thread, its own CPU time measured so that overhead can be reported), and RAPL and IPMI expose the
same ``with source.window(name) as figures`` block over ``begin``/``end``/``cancel``.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator


class BackgroundPoller:
    """Calls ``tick()`` every ``interval_s`` seconds (fixed rate: a slow tick shortens the next
    wait, it does not shift the schedule) until :meth:`stop`."""

    def __init__(self, tick: Callable[[], Any], interval_s: float, name: str):
        if not interval_s > 0:
            raise ValueError(f"poll interval must be > 0 s, got {interval_s!r}")
        self._tick = tick
        self.interval_s = interval_s
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu_seconds = 0.0          # time.thread_time() used by the thread so far
        self.errors = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        cpu0 = time.thread_time()
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:   # keep polling; the owner reports the count
                self.errors += 1
                self.last_error = repr(exc)
            self.cpu_seconds = time.thread_time() - cpu0
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t, delay = time.monotonic(), 0.0
            self._stop.wait(delay)


class PolledSource:
    """Mixin for RAPL and IPMI: lifecycle of an optional ``self._poller`` and the window block over
    ``begin``/``end``, with open windows in ``self._open`` guarded by ``self._lock``."""

    _poller: BackgroundPoller | None
    _open: dict
    _lock: threading.Lock

    def start(self):
        if self._poller is not None:
            self._poller.start()
        return self

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop()

    @property
    def polling(self) -> bool:
        return self._poller is not None and self._poller.running

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cancel(self, name: str) -> None:
        """Drop an open window without a result."""
        with self._lock:
            self._open.pop(name, None)

    def window(self, name: str):
        """``with src.window("run") as figs:`` — ``figs`` holds the figures after the block."""
        return figures_window(self, name)


@contextlib.contextmanager
def figures_window(source: Any, name: str) -> Iterator[list]:
    """``with figures_window(src, "run") as figs:`` — after the block ``figs`` holds what
    ``src.end(name)`` returned; a block that raises cancels the window instead."""
    out: list = []
    source.begin(name)
    try:
        yield out
    except BaseException:
        source.cancel(name)
        raise
    result = source.end(name)
    out.extend(result if isinstance(result, tuple) else (result,))
