import json, sys, numpy as np
rows = json.load(open(sys.argv[1]))
for metric in ("ttft", "tpot"):
    for c in sorted({r["cond"] for r in rows}):
        starts = sorted({r["start"] for r in rows if r["cond"] == c})
        per = [np.log([r[metric] for r in rows if r["cond"] == c and r["start"] == s]) for s in starts]
        means = np.array([p.mean() for p in per])
        within = np.sqrt(np.mean([p.var(ddof=1) for p in per]))
        n = len(per[0])
        between = np.sqrt(max(means.var(ddof=1) - within**2 / n, 0))
        print(f"{metric} {c:8s} starts={len(starts)} median={np.exp(np.median(means)):.2f} within-start SD={100*within:.2f}% "
              f"start-mean SD={100*means.std(ddof=1):.2f}% offset SD={100*between:.2f}%  means={np.round(np.exp(means),1).tolist()}")
