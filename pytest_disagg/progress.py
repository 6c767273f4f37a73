"""Live progress that pytest does not swallow: deployment start-ups, requests done, ladder rungs.

Why through pytest's terminal reporter: a test's stdout and stderr are captured, so a progress
bar written there (the runner's old tqdm bar) is never seen, and minutes pass with nothing but a
file name on screen. The plugin installs a :class:`Progress` bound to the terminal reporter; it
writes with capture suspended (as pytest's live logging does) and

- on a terminal, keeps one updating status line (``\\r``-rewritten, at most every
  ``TTY_INTERVAL_S``) and prints lasting lines for what finished;
- elsewhere (CI logs, a pipe), prints plain lines only at milestones: a start, half way through
  a run, an end — never a carriage return;
- under ``-q`` (verbosity < 0) prints nothing.

Outside pytest (a script calling :func:`pytest_disagg.load.run_workload`), :func:`current`
returns a plain writer to stderr when it is a terminal, else a silent one.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable

TTY_INTERVAL_S = 0.25           # a redraw at most this often: the client shares the CPU with the servers
TICK_S = 1.0                    # how often a start-up's elapsed time is redrawn on a terminal
PLAIN_MILESTONES = (0.5,)          # off a terminal: a line at the start, at half way and at the end


class Progress:
    """Writes progress through two callables: ``line(text)`` (a lasting line) and, on a terminal,
    ``status(text)`` (rewrite the current line; ``""`` clears it). ``status=None``: plain mode."""

    def __init__(self, line: Callable[[str], None] | None, status: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._line, self._status, self.clock = line, status, clock
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._line is not None

    @property
    def tty(self) -> bool:
        return self._status is not None

    def line(self, text: str) -> None:
        if self._line is None:
            return
        with self._lock:
            if self._status is not None:
                self._status("")
            self._line(text)

    def status(self, text: str) -> None:
        """A transient status; ignored in plain mode (only milestones are printed there)."""
        if self._status is not None:
            with self._lock:
                self._status(text)

    # --- what the suite reports ----------------------------------------------------------
    def run(self, desc: str, total: int) -> "RunProgress":
        return RunProgress(self, desc, total)

    @contextlib.contextmanager
    def starting(self, what: str):
        """Around a deployment start-up: "starting X … 12 s", then "X ready in N s" or the failure
        with the tail of its log (the exception's text) — the exception still propagates."""
        t0 = self.clock()
        self.line(f"disagg: starting {what}")
        stop = threading.Event()
        ticker = None
        if self.tty:
            def tick():
                while not stop.wait(TICK_S):
                    self.status(f"disagg: starting {what} … {self.clock() - t0:.0f} s")
            ticker = threading.Thread(target=tick, name="disagg-progress", daemon=True)
            ticker.start()
        try:
            yield
        except BaseException as exc:
            stop.set()
            tail = "\n".join(str(exc).splitlines()[-20:])
            self.line(f"disagg: {what} did not come up after {self.clock() - t0:.0f} s:\n{tail}")
            raise
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
        self.line(f"disagg: {what} ready in {self.clock() - t0:.0f} s")


class RunProgress:
    """Requests done / total of one run; ``advance()`` from the runner's done-callbacks."""

    def __init__(self, progress: Progress, desc: str, total: int):
        self.p, self.desc, self.total, self.done = progress, desc, total, 0
        self.t0 = progress.clock()
        self._last_draw = -1e9
        self._milestones = [int(m * total) for m in PLAIN_MILESTONES if 0 < int(m * total) < total]
        progress.line(f"disagg: {desc}: 0/{total} requests") if not progress.tty else self._draw(force=True)

    def _text(self) -> str:
        return f"disagg: {self.desc}: {self.done}/{self.total} requests, {self.p.clock() - self.t0:.0f} s"

    def _draw(self, force: bool = False) -> None:
        now = self.p.clock()
        if force or now - self._last_draw >= TTY_INTERVAL_S:
            self._last_draw = now
            self.p.status(self._text())

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.p.tty:
            self._draw()
        elif self._milestones and self.done >= self._milestones[0]:
            while self._milestones and self.done >= self._milestones[0]:
                self._milestones.pop(0)
            self.p.line(self._text())

    def close(self) -> None:
        self.p.line(self._text() + " (done)")


_SILENT = Progress(None)
_current: Progress | None = None


def install(progress: Progress | None) -> None:
    """Make ``progress`` what :func:`current` returns (the plugin does this; None uninstalls)."""
    global _current
    _current = progress


def current() -> Progress:
    if _current is not None:
        return _current
    if sys.stderr.isatty():
        return Progress(lambda t: print(t, file=sys.stderr, flush=True))
    return _SILENT


def for_terminal(config) -> Progress:
    """The Progress of a pytest session: through its terminal reporter, capture suspended."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or config.getoption("verbose", 0) < 0:
        return _SILENT
    capman = config.pluginmanager.get_plugin("capturemanager")

    def uncaptured():
        return capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()

    def line(text: str) -> None:
        with uncaptured():
            tr.ensure_newline()
            tr.write_line(text)

    status = None
    if getattr(tr, "isatty", False):
        def status(text: str) -> None:
            with uncaptured():
                tr.rewrite(text, erase=True)
    return Progress(line, status)


__all__ = ["Progress", "RunProgress", "current", "for_terminal", "install"]
