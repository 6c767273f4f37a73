"""Where nixl-cpu's time goes on a CPU box, with vLLM's own thread pinning and with it undone.

vLLM's NIXL connector on CPU pins its worker's main thread to the last core of each NUMA node
(``nixl/base_worker.py``: ``os.sched_setaffinity(0, rsv_cores_for_kv)``, cores read from /sys,
ignoring ``VLLM_CPU_OMP_THREADS_BIND``). The pool binds prefill and decode to disjoint cores; on a
2-core box the prefill server's main thread then runs on decode's compute core. This script starts
nixl-cpu (prefix caching off, the tiny CPU model, the load sweep's request shape) twice — first
leaving vLLM's pinning as it is, then with the pool's fix (``children/affinity.py``: threads pinned
outside their server's cores are moved back) — and for each prints the busiest threads with their
affinity, and per phase (one request at a time; closed loop at concurrency 8 = the capacity probe)
the medians of the proxy's stage records (prefill, hand-off, decode first byte), NIXL's transfer
time per transfer (``vllm:nixl_xfer_time_seconds``) and what the client saw. Last line::

    vllm_pinning_prefill_ms=... vllm_pinning_c8_rps=... confined_prefill_ms=... confined_c8_rps=... nixl_xfer_ms=...

    python benchmarks/nixl_cpu_stages.py [--requests 24] [--medium nixl-cpu] [--logs DIR] [--only vllm|confined]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_disagg.children import affinity, processes  # noqa: E402
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool  # noqa: E402
from pytest_disagg.load import concurrency, run_workload  # noqa: E402
from pytest_disagg.mediums import MediumRegistry  # noqa: E402
from pytest_disagg.sweep import sweep_spec  # noqa: E402

NIXL = ("vllm:nixl_xfer_time_seconds", "vllm:nixl_post_time_seconds")


def _med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _nixl(run) -> dict:
    out = {}
    for entry in run.server_metrics_delta.values():
        totals = entry.get("totals", {})
        for name in NIXL:
            s, c = totals.get(name + "_sum"), totals.get(name + "_count")
            if c:
                out[f"{entry['role']}:{name.split(':')[1]}_mean_ms"] = round(s / c * 1e3, 3)
    return out


def busiest_threads(server, n: int = 4) -> list:
    """(tid, affinity, CPU ticks) of a server's busiest threads (its whole process tree)."""
    rows = []
    for p in affinity.process_tree(server.pid):
        for t in affinity.threads(p):
            try:
                stat = Path(f"/proc/{p}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
                rows.append((t, sorted(os.sched_getaffinity(t)), int(stat[11]) + int(stat[12])))
            except OSError:
                pass
    return sorted(rows, key=lambda r: -r[2])[:n]


def phase(d, variant: str, name: str, spec) -> dict:
    run = run_workload(d, spec, progress=False)
    ok = [r for r in run.measured if r.ok]
    proxy = [r.proxy or {} for r in ok]
    row = {
        "variant": variant, "phase": name, "n_ok": len(ok), "n_failed": run.n_failed, "wall_s": round(run.wall_s, 2),
        "rps": round(len(ok) / run.wall_s, 3) if run.wall_s else None,
        "ttft_ms": _med(r.ttft_ms for r in ok), "e2el_ms": _med(r.e2el_ms for r in ok),
        "prefill_ms": _med(p.get("prefill_ms") for p in proxy), "handoff_ms": _med(p.get("handoff_ms") for p in proxy),
        "decode_first_byte_ms": _med(p.get("decode_first_byte_ms") for p in proxy),
        **_nixl(run),
    }
    print(json.dumps(row), flush=True)
    return row


def measure(variant: str, medium: str, requests: int, logs: Path | None) -> dict:
    pool = DeploymentPool(MediumRegistry(), logs_dir=logs, max_live=1, confine_threads=(variant == "confined"))
    try:
        d = pool.get(DeploymentConfig(medium=medium, device="cpu", prefix_caching=False, block_size=32))
        print(f"{variant}: started {d.key} in {d.startup_s:.0f} s; moved {len(d.confined_threads)} thread(s): "
              f"{d.confined_threads}", flush=True)
        base = sweep_spec("cpu", 1.0)
        seq = phase(d, variant, "sequential", dataclasses.replace(base, arrival=concurrency(1),
                                                                 num_requests=max(8, requests // 3), warmup=2))
        c8 = phase(d, variant, "concurrency-8", dataclasses.replace(base, arrival=concurrency(8),
                                                                   num_requests=requests, warmup=2))
        for s in d.servers:
            print(f"{variant}: {s.role} bound to {s.device}; busiest threads (tid, affinity, CPU ticks): "
                  f"{busiest_threads(s)}", flush=True)
        return {"seq": seq, "c8": c8}
    finally:
        pool.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--medium", default="nixl-cpu")
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' and proxy's logs here")
    ap.add_argument("--only", choices=("vllm", "confined"), default=None)
    args = ap.parse_args(argv)
    processes.install_sigterm_handler()
    out = {}
    try:
        for variant in ("vllm", "confined"):
            if args.only in (None, variant):
                out[variant] = measure(variant, args.medium, args.requests, args.logs)
    finally:
        processes.terminate_all()

    def f(v):
        return "nan" if v is None else f"{v:.3f}"
    parts = []
    for variant, key in (("vllm", "vllm_pinning"), ("confined", "confined")):
        if variant in out:
            parts += [f"{key}_prefill_ms={f(out[variant]['seq']['prefill_ms'])}",
                      f"{key}_c8_ttft_ms={f(out[variant]['c8']['ttft_ms'])}", f"{key}_c8_rps={f(out[variant]['c8']['rps'])}"]
    last = out.get("confined") or out.get("vllm")
    parts.append(f"nixl_xfer_ms={f(last['c8'].get('decode:nixl_xfer_time_seconds_mean_ms'))}")
    print(" ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
