"""A beside B as text: one row per decided metric of every A/B pair (terminal and report)."""
from __future__ import annotations

HEADERS = ["benchmark", "load", "set-up", "metric", "A median", "B median", "B/A", "interval", "p", "rounds",
           "verdict"]


def _num(x, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def pair_rows(pairs: list[dict]) -> list[list[str]]:
    rows = []
    for p in pairs:
        for metric, v in p["verdicts"].items():
            interval = "-" if v.get("lo") is None else f"[{v['lo']:.3f}, {v['hi']:.3f}]"
            rows.append([p["benchmark"], p["load"], p["deployment"]["A"], metric, _num(v.get("a_median"), "{:.2f}"),
                         _num(v.get("b_median"), "{:.2f}"), _num(v.get("ratio"), "{:.3f}"), interval,
                         _num(v.get("p"), "{:.2g}"), str(v.get("rounds")), v["verdict"]])
    return rows


def ab_table(ab: dict, tablefmt: str = "simple") -> str:
    from tabulate import tabulate

    sides = ab.get("sides", {})
    head = []
    for s in "AB":
        info = sides.get(s, {})
        fp = info.get("fingerprint") or {}
        extra = " ".join(info.get("server_args") or []) + " ".join(f"{k}={v}" for k, v in (info.get("env") or {}).items())
        head.append(f"side {s}: {info.get('python')} vLLM {fp.get('vllm')} torch {fp.get('torch')} "
                    f"nixl {fp.get('nixl')} lmcache {fp.get('lmcache')}" + (f" [{extra.strip()}]" if extra.strip() else ""))
    table = tabulate(pair_rows(ab.get("pairs", [])), headers=HEADERS, tablefmt=tablefmt)
    return "\n".join(head) + "\n" + table + f"\nA/B verdict: {ab.get('verdict')}"


SIDE_FIELDS = ("python", "interpreter", "vllm", "torch", "nixl", "lmcache", "cuda", "driver", "gpu", "cpu")


def sides_rows(ab: dict) -> list[list[str]]:
    """Field | side A | side B: the software of each side, then what B changes."""
    sides = ab.get("sides", {})
    rows = [["interpreter"] + [str(sides.get(s, {}).get("python")) for s in "AB"]]
    for name in SIDE_FIELDS[2:]:
        values = [(sides.get(s, {}).get("fingerprint") or {}).get(name) for s in "AB"]
        if any(v not in (None, [], "") for v in values):
            rows.append([name] + ["-" if v in (None, [], "") else str(v) for v in values])
    for key, label in (("env", "server environment"), ("server_args", "extra server arguments")):
        values = [sides.get(s, {}).get(key) or {} for s in "AB"]
        if any(values):
            rows.append([label] + [" ".join(f"{k}={v}" for k, v in x.items()) if isinstance(x, dict) else " ".join(x)
                                   or "-" for x in values])
    return rows


def ab_markdown(ab: dict) -> str:
    """The report's A/B section: both sides' software side by side, then every verdict."""
    from tabulate import tabulate

    o = ab.get("options", {})
    return (tabulate(sides_rows(ab), headers=["", "side A", "side B"], tablefmt="github") + "\n\n"
            + tabulate(pair_rows(ab.get("pairs", [])), headers=HEADERS, tablefmt="github") + "\n\n"
            + f"Overall: **{ab.get('verdict')}**. B/A: ratio of pooled medians, interval: "
            f"99 % bootstrap over whole rounds (paired); p: min(Mann-Whitney, KS) over round medians; "
            f"looks at rounds {o.get('looks')}, fresh deployments per round: {o.get('fresh')}.")
