"""Reading a child's log: its tail, and the exception lines that often sit far above the tail."""
from __future__ import annotations

import re
from collections import deque
from pathlib import Path

_EXC_RE = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception): .*")


def log_tail(path: Path, lines: int = 50) -> str:
    try:
        with open(path, "rb") as fh:
            return b"".join(deque(fh, maxlen=lines)).decode("utf-8", "replace")
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"


def error_lines(path: Path, limit: int = 5) -> list[str]:
    """Distinct exception lines ("ValueError: ...") — the root cause is often far above the tail."""
    seen: list[str] = []
    try:
        with open(path, "r", errors="replace") as fh:
            for line in fh:
                m = _EXC_RE.search(line)
                if m and m.group(0) not in seen:
                    seen.append(m.group(0))
    except OSError:
        return []
    return seen[:limit]
