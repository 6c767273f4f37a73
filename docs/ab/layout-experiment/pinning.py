"""Usage: python pinning.py OUT.json STARTS RUNS_PER_START (from the project root).

Per-start offset: does it come from where the host-side processes run? On 2 cores vLLM binds only the
model worker's OpenMP thread (core 0); EngineCore's busy loop (~100 % of a core during a run), the API
server, the proxy and the load client float over both cores. "pinned" moves every thread of those onto
core 1 after the start (and back for the client); "default" leaves them. Starts alternate."""
import json, os, sys
from pathlib import Path
import numpy as np
import psutil
from pytest_disagg.children import processes
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.ab.workload import ab_spec, CPU_MODEL
from pytest_disagg.load import run_workload

out = sys.argv[1]; starts = int(sys.argv[2]); runs = int(sys.argv[3])
WORKER_CORE, HOST_CORE = 0, 1


def pin_tree(root_pids, core) -> int:
    moved = 0
    for pid in root_pids:
        try:
            procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            continue
        for p in procs:
            try:
                if "Worker" in p.name():
                    continue
                for t in p.threads():
                    os.sched_setaffinity(t.id, {core})
                    moved += 1
            except (psutil.Error, OSError):
                pass
    return moved


def pin_self(cores):
    for t in psutil.Process().threads():
        try:
            os.sched_setaffinity(t.id, cores)
        except OSError:
            pass


processes.install_sigterm_handler()
pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)
everything = os.sched_getaffinity(0)
rows = []
try:
    for i in range(starts):
        order = ["default", "pinned"] if i % 2 == 0 else ["pinned", "default"]
        for c in order:
            cfg = DeploymentConfig(medium="colocated", model=CPU_MODEL, device="cpu", block_size=32,
                                   prefix_caching=False, variant=f"{c}{i}")
            dep = pool.get(cfg)
            moved = 0
            if c == "pinned":
                moved = pin_tree([ch.pid for ch in processes.live_children()], HOST_CORE)
                pin_self({HOST_CORE})
            try:
                for r in range(runs):
                    res = run_workload(dep, ab_spec("cpu", "colocated", seed=7 + r), progress=False)
                    s = res.samples()
                    rows.append({"cond": c, "start": i, "pos": order.index(c), "run": r, "moved": moved,
                                 "ttft": float(np.median(s["ttft_ms"])), "tpot": float(np.median(s["tpot_ms"])),
                                 "load": os.getloadavg()[0]})
                    print(rows[-1], file=sys.stderr, flush=True)
            finally:
                pin_self(everything)
            pool.release(cfg)
            json.dump(rows, open(out, "w"))
finally:
    pool.close()
