"""JSON text for committed baseline files (sorted keys, 2-space indent, number lists wrapped),
and reading JSON files with errors that say which file and what is wrong with it.

Why not ``json.dumps(indent=2)``: it puts every sample of a list on a line of its own, so a file
with a few thousand per-request samples is thousands of lines long and a refresh diff is
unreadable. Here objects are indented as usual but a list of plain numbers/strings is packed into
lines of at most ``width`` characters. The output is ordinary JSON (``json.loads`` reads it) and
deterministic: the same data always gives the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WIDTH = 100


def _scalar(value: Any) -> str:
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def _is_flat(items: list) -> bool:
    return all(not isinstance(i, (dict, list, tuple)) for i in items)


def _wrap(tokens: list[str], indent: str, width: int) -> list[str]:
    lines, current = [], ""
    for token in tokens:
        piece = token + ","
        if current and len(indent) + len(current) + 1 + len(piece) > width:
            lines.append(indent + current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        lines.append(indent + current)
    lines[-1] = lines[-1][:-1]  # no comma after the last item
    return lines


def _render(value: Any, level: int, width: int) -> str:
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {key!r}")
        parts = [f"{inner}{_scalar(k)}: {_render(value[k], level + 1, width)}" for k in sorted(value)]
        return "{\n" + ",\n".join(parts) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if _is_flat(value):
            one_line = "[" + ", ".join(_scalar(v) for v in value) + "]"
            if len(pad) + len(one_line) <= width:
                return one_line
            return "[\n" + "\n".join(_wrap([_scalar(v) for v in value], inner, width)) + "\n" + pad + "]"
        parts = [inner + _render(v, level + 1, width) for v in value]
        return "[\n" + ",\n".join(parts) + "\n" + pad + "]"
    return _scalar(value)


def dumps(value: Any, width: int = WIDTH) -> str:
    """Deterministic, diff-friendly JSON text ending in a newline; NaN/inf are refused."""
    return _render(value, 0, width) + "\n"


def read_json(path: str | Path, error: type[Exception] = ValueError, *, hint: str = "") -> Any:
    """Parse a JSON file; a missing, unreadable, empty or malformed file raises ``error`` whose
    message starts with the path and, for a file cut short, says it looks truncated."""
    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read ({exc})") from None
    if not text.strip():
        raise error(f"{path}: empty file (an interrupted write?){suffix}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = " — truncated?" if exc.pos >= len(text.rstrip()) else ""
        raise error(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}{truncated})"
                    f"{suffix}") from None


__all__ = ["dumps", "read_json", "WIDTH"]
