"""What an idle nixl-cpu pair costs the rest of a CPU box, and what pausing it does about it.

NIXL's UCX progress thread polls with a zero timeout: an idle nixl-cpu server spins a whole core.
The pool therefore stops (SIGSTOP) every other live CPU deployment while one starts or is measured
(``DeploymentPool.others_paused``). This script measures, side by side in one run, with pausing
off and then on, a nixl-cpu pair kept up beside a colocated deployment (what the main job and the
equality property do):

- the idle pair's CPU use (cores, over 3 s, its whole process trees);
- how long the colocated deployment takes to start beside it;
- colocated's median TTFT, one request at a time, with the pair up;
- nixl-cpu's median TTFT after that (with pausing on: after it was stopped and continued, so a
  pause that broke its transfers would show as failures).

Last line::

    idle_pair_cores=... running_beside_start_s=... paused_beside_start_s=... start_ratio=...
    running_colocated_ttft_ms=... paused_colocated_ttft_ms=... colocated_ttft_ratio=...
    running_nixl_ttft_ms=... paused_nixl_ttft_ms=... nixl_failed=...

    python benchmarks/idle_spinners.py [--requests 12] [--logs DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_disagg.children import affinity, processes  # noqa: E402
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool  # noqa: E402
from pytest_disagg.load import concurrency, run_workload  # noqa: E402
from pytest_disagg.mediums import MediumRegistry  # noqa: E402
from pytest_disagg.sweep import sweep_spec  # noqa: E402

PAIR = DeploymentConfig(medium="nixl-cpu", device="cpu", prefix_caching=False)
COLOCATED = DeploymentConfig(medium="colocated", device="cpu", prefix_caching=False)


def idle_cores(deployment, window_s: float = 3.0) -> float:
    pids = [s.pid for s in deployment.servers]
    before = affinity.cpu_ticks(pids)
    time.sleep(window_s)
    return affinity.busy_cores(before, affinity.cpu_ticks(pids), window_s)


def sequential(pool, deployment, requests: int) -> dict:
    spec = dataclasses.replace(sweep_spec("cpu", 1.0), arrival=concurrency(1), num_requests=requests, warmup=2)
    with pool.others_paused(deployment):
        run = run_workload(deployment, spec, progress=False)
    ok = [r for r in run.measured if r.ok]
    return {"n_ok": len(ok), "n_failed": run.n_failed,
            "ttft_ms": round(statistics.median(r.ttft_ms for r in ok), 1) if ok else None}


def measure(pause: bool, requests: int, logs: Path | None) -> dict:
    variant = "paused" if pause else "running"
    pool = DeploymentPool(MediumRegistry(), logs_dir=logs, max_live=2, pause_idle=pause, server_timeout_s=900)
    try:
        pair = pool.get(PAIR)
        row = {"variant": variant, "pair_start_s": round(pair.startup_s, 1), "idle_pair_cores": round(idle_cores(pair), 3)}
        t0 = time.monotonic()
        colocated = pool.get(COLOCATED)
        row["beside_start_s"] = round(time.monotonic() - t0, 1)
        row["colocated"] = sequential(pool, colocated, requests)
        row["nixl"] = sequential(pool, pair, requests)
        print(json.dumps(row), flush=True)
        return row
    finally:
        pool.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' and proxy's logs here")
    args = ap.parse_args(argv)
    processes.install_sigterm_handler()
    try:
        rows = {r["variant"]: r for r in (measure(False, args.requests, args.logs), measure(True, args.requests, args.logs))}
    finally:
        processes.terminate_all()
    r, p = rows["running"], rows["paused"]

    def ratio(a, b):
        return f"{a / b:.3f}" if a and b else "nan"
    print(f"idle_pair_cores={r['idle_pair_cores']} running_beside_start_s={r['beside_start_s']} "
          f"paused_beside_start_s={p['beside_start_s']} start_ratio={ratio(p['beside_start_s'], r['beside_start_s'])} "
          f"running_colocated_ttft_ms={r['colocated']['ttft_ms']} paused_colocated_ttft_ms={p['colocated']['ttft_ms']} "
          f"colocated_ttft_ratio={ratio(p['colocated']['ttft_ms'], r['colocated']['ttft_ms'])} "
          f"running_nixl_ttft_ms={r['nixl']['ttft_ms']} paused_nixl_ttft_ms={p['nixl']['ttft_ms']} "
          f"nixl_failed={r['nixl']['n_failed'] + p['nixl']['n_failed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
