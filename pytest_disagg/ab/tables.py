"""A beside B as text: one row per decided metric of every A/B pair (terminal and report)."""
from __future__ import annotations

from tabulate import tabulate

from .. import verdicts as words
from .decide import resolution_text

HEADERS = ["benchmark", "load", "set-up", "metric", "A median", "B median", "B/A", "interval", "p", "rounds",
           "resolves", "verdict"]


def _num(x, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def pair_rows(pairs: list[dict]) -> list[list[str]]:
    rows = []
    for p in pairs:
        ci = p.get("ci")
        interval = "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        rows.append([p["benchmark"], p["load"], p["deployment"], p["metric"], _num(p.get("a_median"), "{:.2f}"),
                     _num(p.get("b_median"), "{:.2f}"), _num(p.get("ratio"), "{:.3f}"), interval,
                     _num(p.get("p"), "{:.2g}"), str(p.get("rounds")), _num(p.get("resolves"), "{:.0%}"), p["verdict"]])
    return rows


def side_line(setup: dict, side: str) -> str:
    info = setup.get("sides", {}).get(side, {})
    fp = info.get("fingerprint") or {}
    change = " ".join(info.get("server_args") or []) + " ".join(f"{k}={v}" for k, v in (info.get("env") or {}).items())
    return (f"side {side}: {info.get('python')} vLLM {fp.get('vllm')} torch {fp.get('torch')} nixl {fp.get('nixl')} "
            f"lmcache {fp.get('lmcache')}" + (f" [{change.strip()}]" if change.strip() else ""))


def ab_table(setup: dict, pairs: list[dict], tablefmt: str = "simple") -> str:
    """Terminal text: one line per side, then one row per decided metric."""
    table = tabulate(pair_rows(pairs), headers=HEADERS, tablefmt=tablefmt)
    return "\n".join([side_line(setup, "A"), side_line(setup, "B"), table, *undecided_lines(pairs),
                      f"A/B verdict: {words.worst([p['verdict'] for p in pairs])}"])


def undecided_lines(pairs: list[dict]) -> list[str]:
    """For each undecided metric: how far its rounds can see, and what it would take."""
    out = []
    for p in pairs:
        text = resolution_text(p) if p["verdict"] == words.UNDECIDED else ""
        if text:
            out.append(f"{p['deployment']} {p['load']} {text}")
    return out


SIDE_FIELDS = ("python", "interpreter", "vllm", "torch", "nixl", "lmcache", "cuda", "driver", "gpu", "cpu")


def sides_rows(setup: dict) -> list[list[str]]:
    """Field | side A | side B: the software of each side, then what B changes."""
    sides = setup.get("sides", {})
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


def ab_markdown(setup: dict, pairs: list[dict]) -> str:
    """The report's A/B section: both sides' software side by side, then every verdict."""
    notes = undecided_lines(pairs)
    return (tabulate(sides_rows(setup), headers=["", "side A", "side B"], tablefmt="github") + "\n\n"
            + tabulate(pair_rows(pairs), headers=HEADERS, tablefmt="github") + "\n\n"
            + "".join(f"- {line}\n" for line in notes) + ("\n" if notes else "")
            + f"Overall: **{words.worst([p['verdict'] for p in pairs])}**. B/A: Hodges-Lehmann estimate of the rounds' "
            f"B/A (each round's median on each side); interval: 99 %, the signed-rank test inverted; p: exact "
            f"Wilcoxon signed-rank over the rounds' log B/A; resolves: the smallest change these rounds call with 95 % "
            f"power at their round-to-round noise; "
            f"looks at rounds {setup.get('looks')}; fresh deployments per round: {setup.get('fresh')}.")
