"""The process between a Ray actor and the supervisor of its server (``python -m ... nodehost``).

Ray SIGKILLs a worker's direct children when the worker exits (``kill_child_processes_on_worker_exit``),
which would kill the supervisor before it could end the server's tree. So the actor starts this
host, and the host starts the server through ``processes.start``: the supervisor watches the
host's pipe. When the actor dies, the host dies (Ray kills it) or sees its stdin close (then it
stops the server itself); either way the supervisor ends the whole tree.

Protocol, one JSON document per line: the first line on stdin is the start request
``{"name", "cmd", "env", "log_path", "ports", "grace_s"}``; the host answers ``{"pid": ...}`` or
``{"error": ...}``. Then requests ``{"op": "poll"|"alive"|"status_text"|"stop"|"explain", ...}``
each get ``{"result": ...}``; ``stop`` also ends the host.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_disagg.children import processes


def main() -> int:
    out = sys.stdout
    first = sys.stdin.readline()
    if not first:
        return 1
    req = json.loads(first)
    try:
        child = processes.start(req["name"], req["cmd"], env=req["env"], log_path=Path(req["log_path"]),
                                ports=tuple(req["ports"]), grace_s=req["grace_s"])
    except Exception as exc:
        out.write(json.dumps({"error": str(exc)}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"pid": child.pid}) + "\n")
    out.flush()
    for line in sys.stdin:
        op = json.loads(line)
        name = op.get("op")
        if name == "poll":
            result = child.poll()
        elif name == "alive":
            result = child.alive()
        elif name == "status_text":
            result = child.status_text()
        elif name == "explain":
            result = child.explain(op["what"], op.get("lines", 50))
        elif name == "stop":
            result = processes.stop(child)
        else:
            result = f"unknown op {name!r}"
        out.write(json.dumps({"result": result}) + "\n")
        out.flush()
        if name == "stop":
            return 0
    processes.stop(child)          # the actor is gone (stdin closed): end the server
    return 0


if __name__ == "__main__":
    sys.exit(main())
