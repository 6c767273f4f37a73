"""Usage: python collect.py OUT.json STARTS RUNS_PER_START [random] (from the project root).

Each start is a pair, one deployment per layout; their order alternates, or with ``random`` is drawn per pair.

Per-start offset: does a fixed address-space layout (ASLR off, PYTHONHASHSEED=0) narrow it?"""
import json, os, random, sys
from pathlib import Path
import numpy as np
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool, processes
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.ab.workload import ab_spec, CPU_MODEL
from pytest_disagg.load import run_workload

os.environ["DISAGG_LAYOUT_PYTHON"] = sys.executable   # pywrap.sh runs this interpreter
out = sys.argv[1]; starts = int(sys.argv[2]); runs = int(sys.argv[3])
random_order = sys.argv[4:] == ["random"]; rng = random.Random(11)
conds = {
    "default": dict(),
    "fixed": dict(python=str(Path(__file__).with_name("pywrap.sh")), server_env=(("PYTHONHASHSEED", "0"),)),
}
processes.install_sigterm_handler()
pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)
rows = []
try:
    for i in range(starts):
        first = rng.random() < 0.5 if random_order else i % 2 == 0
        order = list(conds) if first else list(conds)[::-1]
        for c in order:
            cfg = DeploymentConfig(medium="colocated", model=CPU_MODEL, device="cpu", block_size=32,
                                   prefix_caching=False, variant=f"{c}{i}", **conds[c])
            dep = pool.get(cfg)
            for r in range(runs):
                res = run_workload(dep, ab_spec("cpu", "colocated", seed=7 + r), progress=False)
                s = res.samples()
                rows.append({"cond": c, "start": i, "pos": order.index(c), "run": r, "ttft": float(np.median(s["ttft_ms"])),
                             "tpot": float(np.median(s["tpot_ms"])), "load": os.getloadavg()[0]})
                print(rows[-1], file=sys.stderr, flush=True)
            pool.release(cfg)
            json.dump(rows, open(out, "w"))
finally:
    pool.close()
