"""Run a cleanup on every way out: normal exit, exception, SIGINT, SIGTERM, interpreter exit.

Why a module of its own: a GPU left with locked clocks after a benchmark is a silent, lasting
change to a shared machine, and the paths out of a Python process are many. This guard knows
nothing about GPUs; it takes a cleanup function, makes sure it runs, and then lets the signal do
what it would have done without us (the previous handler is chained, the default action is
re-delivered), so that Ctrl-C still interrupts and SIGTERM still terminates.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RestoreGuard:
    """Arm before changing something; disarm after restoring it.

    ``run_cleanup()`` calls the cleanup, never re-entrantly: a signal that arrives while the
    cleanup runs is held and delivered when it has finished. The cleanup should be idempotent
    (the clock controller's is: it forgets each setting once reset).

    Signal handlers can only be installed from the main thread; elsewhere the guard logs that and
    still covers exceptions (via the caller's ``finally``) and interpreter exit (atexit).
    """

    def __init__(self, cleanup: Callable[[], Any], *, signals: Iterable[int] = DEFAULT_SIGNALS,
                 kill: Callable[[int, int], None] = os.kill):
        self._cleanup = cleanup
        self._signals = tuple(signals)
        self._kill = kill
        self._previous: dict[int, Any] = {}
        self._armed = False
        self._running = False
        self._pending: list[int] = []
        self.signals_installed = False

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        if self._armed:
            return
        self._armed = True
        atexit.register(self._at_exit)
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: no SIGINT/SIGTERM restore handlers installed "
                        "(exceptions and interpreter exit are still covered)")
            return
        for sig in self._signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        self.signals_installed = True

    def disarm(self) -> None:
        """Put back the previous handlers (where ours is still installed) and drop the atexit hook;
        then deliver any signal that arrived during the cleanup."""
        if not self._armed:
            return
        self._armed = False
        atexit.unregister(self._at_exit)
        if self.signals_installed:
            for sig, previous in self._previous.items():
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, signal.SIG_DFL if previous is None else previous)
            self.signals_installed = False
        pending, self._pending = self._pending, []
        for sig in pending:
            self._kill(os.getpid(), sig)

    def run_cleanup(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            self._cleanup()
        finally:
            self._running = False

    def _at_exit(self) -> None:
        try:
            self.run_cleanup()
        except Exception:  # at exit nobody can catch it; say what failed
            log.exception("restore at interpreter exit failed")

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._running:
            self._pending.append(signum)
            return
        if self._armed:
            try:
                self.run_cleanup()
            except Exception:  # still let the signal do its job
                log.exception("restore on signal %s failed", signum)
        previous = self._previous.get(signum, signal.SIG_DFL)
        self.disarm()
        if callable(previous):
            previous(signum, frame)           # e.g. Python's default_int_handler: KeyboardInterrupt
        elif previous == signal.SIG_IGN:
            return
        else:                                 # SIG_DFL (or unknown): the default action, for real
            self._kill(os.getpid(), signum)
