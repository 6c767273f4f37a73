"""Where nixl-cpu's time goes on a CPU box: per-request proxy stages and NIXL's own metrics.

Starts one nixl-cpu deployment (prefix caching off, the tiny CPU model), then runs the load
sweep's request shape three ways — one request at a time, closed loop at concurrency 8 (the
capacity probe) and closed loop at concurrency 2 — and prints, per phase, the medians of the
proxy's stage records (prefill, hand-off, decode first byte), NIXL's transfer time per transfer
(``vllm:nixl_xfer_time_seconds``) and post time, and what the client saw (TTFT, E2E, req/s).
It is also the minimal reproduction of the finding in README ("nixl-cpu on a CPU box"). Last
line, e.g.::

    nixl_seq_ttft_ms=... nixl_c8_ttft_ms=... nixl_c8_rps=... nixl_c8_decode_first_byte_ms=... nixl_xfer_ms=...

    python benchmarks/nixl_cpu_stages.py [--requests 24] [--medium nixl-cpu] [--logs DIR]
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

from pytest_disagg.deploy import DeploymentConfig, DeploymentPool, affinity, processes  # noqa: E402
from pytest_disagg.load import concurrency, run_workload  # noqa: E402
from pytest_disagg.mediums import MediumRegistry  # noqa: E402
from pytest_disagg.sweep import sweep_spec  # noqa: E402

NIXL = ("vllm:nixl_xfer_time_seconds", "vllm:nixl_post_time_seconds", "vllm:nixl_bytes_transferred",
        "vllm:nixl_num_descriptors")


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
                out[f"{entry['role']}:{name.split(':')[1]}_mean"] = s / c
                out[f"{entry['role']}:{name.split(':')[1]}_count"] = c
    return out


def phase(d, name: str, spec) -> dict:
    run = run_workload(d, spec, progress=False)
    ok = [r for r in run.measured if r.ok]
    proxy = [r.proxy or {} for r in ok]
    row = {
        "phase": name, "n_ok": len(ok), "n_failed": run.n_failed, "wall_s": round(run.wall_s, 2),
        "rps": round(len(ok) / run.wall_s, 3) if run.wall_s else None,
        "ttft_ms": _med(r.ttft_ms for r in ok), "e2el_ms": _med(r.e2el_ms for r in ok),
        "prefill_ms": _med(p.get("prefill_ms") for p in proxy), "handoff_ms": _med(p.get("handoff_ms") for p in proxy),
        "decode_first_byte_ms": _med(p.get("decode_first_byte_ms") for p in proxy),
        "decode_first_byte_max_ms": max((p.get("decode_first_byte_ms") or 0 for p in proxy), default=None),
        "send_lag_ms_max": max((r.send_lag_ms or 0 for r in ok), default=None),
        **_nixl(run),
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--medium", default="nixl-cpu")
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' and proxy's logs here")
    ap.add_argument("--confine", action="store_true",
                    help="move threads vLLM pinned outside a server's cores back onto them before measuring")
    args = ap.parse_args(argv)
    processes.install_sigterm_handler()
    pool = DeploymentPool(MediumRegistry(), logs_dir=args.logs, max_live=1)
    try:
        d = pool.get(DeploymentConfig(medium=args.medium, device="cpu", prefix_caching=False, block_size=32))
        print(f"started {d.key} in {d.startup_s:.0f} s; servers {[(s.role, s.device) for s in d.servers]}", flush=True)
        for s in d.servers:
            cpu_time = {}
            for p in affinity.process_tree(s.pid):
                for t in affinity.threads(p):
                    try:
                        stat = Path(f"/proc/{p}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
                        cpu_time[(p, t)] = (sorted(os.sched_getaffinity(t)), int(stat[11]) + int(stat[12]))
                    except OSError:
                        pass
            busiest = sorted(cpu_time.items(), key=lambda kv: -kv[1][1])[:4]
            print(f"{s.role} ({s.device}): busiest threads (pid, tid) -> (affinity, CPU ticks): {busiest}", flush=True)
            if args.confine and s.device.startswith("cpu:"):
                moved = affinity.confine(s.pid, affinity.parse_cores(s.device[4:]))
                print(f"{s.role}: moved {len(moved)} thread(s) back onto {s.device[4:]}", flush=True)
        base = sweep_spec("cpu", 1.0)
        seq = phase(d, "sequential", dataclasses.replace(base, arrival=concurrency(1), num_requests=args.requests // 2,
                                                         warmup=2, name="seq"))
        c8 = phase(d, "concurrency-8", dataclasses.replace(base, arrival=concurrency(8), num_requests=args.requests,
                                                           warmup=2, name="c8"))
        c2 = phase(d, "concurrency-2", dataclasses.replace(base, arrival=concurrency(2), num_requests=args.requests,
                                                           warmup=2, name="c2"))
    finally:
        pool.close()
        processes.terminate_all()
    xfer = c8.get("decode:nixl_xfer_time_seconds_mean")

    def f(v):
        return "nan" if v is None else f"{v:.3f}"
    print(f"confined={int(args.confine)} nixl_seq_ttft_ms={f(seq['ttft_ms'])} nixl_c2_ttft_ms={f(c2['ttft_ms'])} nixl_c8_ttft_ms={f(c8['ttft_ms'])} "
          f"nixl_c8_rps={f(c8['rps'])} nixl_c8_decode_first_byte_ms={f(c8['decode_first_byte_ms'])} "
          f"nixl_xfer_ms={f(xfer * 1e3 if xfer is not None else None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
