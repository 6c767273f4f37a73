"""Usage: python collect.py OUT.json STARTS RUNS_PER_START [random] [pads | thp] (from the project root).

Each start is a pair (or triple), one deployment per layout; their order rotates, or with ``random`` is
shuffled per start (``offset-2.json`` was drawn by an earlier version with a coin flip per pair).

Per-start offset: does a fixed address-space layout (ASLR off, PYTHONHASHSEED=0) narrow it? With ``pads``
the layouts are all fixed and differ only in the size of one environment variable (the stack's place):
does that alone move the level?"""
import json, os, random, sys
from pathlib import Path
import numpy as np
from pytest_disagg.children import processes
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.ab.workload import ab_spec, CPU_MODEL
from pytest_disagg.load import run_workload

os.environ["DISAGG_LAYOUT_PYTHON"] = sys.executable   # pywrap.sh runs this interpreter
out = sys.argv[1]; starts = int(sys.argv[2]); runs = int(sys.argv[3])
random_order = "random" in sys.argv[4:]; rng = random.Random(11)
wrap = str(Path(__file__).with_name("pywrap.sh"))
conds = {
    "default": dict(),
    "fixed": dict(python=wrap, server_env=(("PYTHONHASHSEED", "0"),)),
}
if "pads" in sys.argv[4:]:
    conds = {f"pad{n}": dict(python=wrap, server_env=(("PYTHONHASHSEED", "0"), ("LAYOUT_PAD", "x" * n)))
             for n in (64, 1088, 2112)}
if "thp" in sys.argv[4:]:     # PyTorch's CPU allocator asks for transparent huge pages (THP is "madvise" here)
    conds = {"default": dict(), "thp": dict(server_env=(("THP_MEM_ALLOC_ENABLE", "1"),))}
processes.install_sigterm_handler()
pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)
rows = []
try:
    for i in range(starts):
        order = list(conds)
        if random_order:
            rng.shuffle(order)
        else:
            k = i % len(order)
            order = order[k:] + order[:k]
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
