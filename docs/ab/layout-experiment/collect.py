"""Per-start offset: does a fixed address-space layout (ASLR off, PYTHONHASHSEED=0) narrow it?"""
import json, sys, time, os
import numpy as np
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool, processes
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.ab.workload import ab_spec, CPU_MODEL
from pytest_disagg.load import run_workload

out = sys.argv[1]; starts = int(sys.argv[2]); runs = int(sys.argv[3])
conds = {
    "default": dict(),
    "fixed": dict(python="/tmp/exp/pywrap.sh", server_env=(("PYTHONHASHSEED", "0"),)),
}
processes.install_sigterm_handler()
pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)
rows = []
try:
    for i in range(starts):
        order = list(conds) if i % 2 == 0 else list(conds)[::-1]
        for c in order:
            cfg = DeploymentConfig(medium="colocated", model=CPU_MODEL, device="cpu", block_size=32,
                                   prefix_caching=False, variant=f"{c}{i}", **conds[c])
            dep = pool.get(cfg)
            for r in range(runs):
                res = run_workload(dep, ab_spec("cpu", "colocated", seed=7 + r), progress=False)
                s = res.samples()
                rows.append({"cond": c, "start": i, "run": r, "ttft": float(np.median(s["ttft_ms"])),
                             "tpot": float(np.median(s["tpot_ms"])), "load": os.getloadavg()[0]})
                print(rows[-1], file=sys.stderr, flush=True)
            pool.release(cfg)
            json.dump(rows, open(out, "w"))
finally:
    pool.close()
