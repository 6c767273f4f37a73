"""Files written whole or not at all: a temporary file beside the target, flushed to disk, then
``os.replace``d over it, so that a reader, or a run killed mid-write, sees the old content or the
new, never half of it. The one way the results JSON, baselines, exports and the session's state
file are written; :func:`held_signals` keeps a Ctrl-C or SIGTERM from cutting a write (or a run
directory and its file) in two.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0644 under the usual umask 022), for a file others
    read (an export): ``mkstemp``'s 0600 would make it the owner's only."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, text: str, *, dir_mode: int = 0o777, file_mode: int | None = None) -> None:
    """Write ``text`` to ``path`` (its directory made with ``dir_mode`` if missing; the file gets
    ``file_mode``, else it is the owner's only, as ``mkstemp`` makes it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if file_mode is not None:
            os.fchmod(fd, file_mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def held_signals():
    """SIGINT and SIGTERM blocked in the main thread for the block and delivered once it ends, so
    that an interrupted session still leaves what it was writing whole (elsewhere: no-op)."""
    held = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask"):
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


__all__ = ["atomic_write", "held_signals", "new_file_mode"]
