"""The report's tables, as GitHub markdown (tabulate): per benchmark, deployments, fingerprint."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from tabulate import tabulate

from ..baseline.fingerprint import MACHINE_FIELDS, stable_hash
from .runs import RunView, fmt_number
from .style import series_labels

TABLEFMT = "github"


def markdown(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub table; ``|`` in cells escaped so that a value cannot break the row."""
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return tabulate(clean, headers=list(headers), tablefmt=TABLEFMT, disable_numparse=True)


def _est(run: RunView, metric: str) -> str:
    e = run.stat(metric, "p50")
    return "-" if e is None else e.text()


def benchmark_table(runs: Sequence[RunView]) -> str:
    """One row per run: set-up, load, n, failures, latency medians with CIs, throughput, J/token, gate."""
    clocks = any(r.clocks is not None for r in runs)
    headers = ["set-up", "load"] + (["clocks"] if clocks else []) + [
        "n", "failed", "TTFT p50 ms [95 % CI]", "TPOT p50 ms [95 % CI]", "E2E p50 ms [95 % CI]", "out tok/s",
        "J/token", "valid", "gate"]
    rows = []
    labels = series_labels(runs)
    for r in runs:
        energy = r.energy_per_token()
        row = [labels[r.index], r.load or "-"]
        if clocks:
            row.append("-" if r.clocks is None else r.clocks.label()
                       + (" (dry run)" if r.clocks.dry_run else ""))
        row += [_int(r.n_ok), _int(r.n_failed), _est(r, "ttft_ms"), _est(r, "tpot_ms"), _est(r, "e2el_ms"),
                fmt_number(r.scalar("output_throughput")), "-" if energy is None else energy.text(),
                validity_cell(r.raw), str(r.raw.get("gate") or "-")]
        rows.append(row)
    return markdown(rows, headers)


def validity_cell(run: Mapping[str, Any]) -> str:
    """"yes", "**no**: reason, reason" (pytest_disagg.validity), or "-" for results without the flag."""
    if run.get("valid") is None:
        return "-"
    return "yes" if run["valid"] else "**no**: " + ", ".join(run.get("invalid_reasons") or ["?"])


def _int(x: int | None) -> str:
    return "-" if x is None else str(x)


def deployments_table(deployments: Mapping[str, Any]) -> str | None:
    if not deployments:
        return None
    rows = []
    for key, dep in sorted(deployments.items()):
        if not isinstance(dep, Mapping):
            continue
        medium = dep.get("medium")
        medium_name = medium.get("name") if isinstance(medium, Mapping) else medium
        handoff = medium.get("handoff") if isinstance(medium, Mapping) else None
        servers = dep.get("servers") if isinstance(dep.get("servers"), list) else []
        layout = ", ".join(f"{s.get('role')}@{s.get('device')}" for s in servers if isinstance(s, Mapping)) or "-"
        rows.append([key, medium_name or "-", handoff or "-", layout, fmt_number(_num(dep.get("startup_s"))),
                     fmt_number(_num(dep.get("kv_bytes_per_token"))), *selfcheck_cells(dep.get("selfcheck"))])
    headers = ["deployment", "medium", "hand-off", "servers", "start-up s", "KV B/token (model)", "self-check",
               "evidence"]
    return markdown(rows, headers)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def selfcheck_cells(check: Any) -> list[str]:
    """(verdict, evidence) for the deployments table: what proved (or failed to prove) the KV moved."""
    if not isinstance(check, Mapping):
        return ["- (colocated: nothing to move)", "-"]
    verdict = "passed" if check.get("passed") else f"FAILED: {check.get('explanation', '?')}"
    parts = []
    if _num(check.get("measured_kv_bytes_per_token")) is not None:
        parts.append(f"NIXL moved {fmt_number(check['measured_kv_bytes_per_token'], 6)} B/token "
                     f"(model: {fmt_number(_num(check.get('expected_kv_bytes_per_token')), 6)})")
    if _num(check.get("external_hit_tokens")) is not None:
        parts.append(f"decode loaded {fmt_number(check['external_hit_tokens'])} of "
                     f"{fmt_number(_num(check.get('full_block_tokens')))} full-block prompt tokens from the medium")
    if _num(check.get("decode_local_compute_tokens")) is not None:
        allowed = _num(check.get("allowed_local_compute_tokens"))
        parts.append(f"decode recomputed {fmt_number(check['decode_local_compute_tokens'])} prompt tokens"
                     + (f" (≤ {fmt_number(allowed)} allowed)" if allowed is not None else ""))
    return [verdict, "; ".join(parts) or str(check.get("evidence") or "-")]


def fingerprint_table(machine: Mapping[str, Any], options: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str:
    rows = []
    for name in sorted(machine, key=lambda k: (MACHINE_FIELDS.index(k) if k in MACHINE_FIELDS else 99, k)):
        rows.append([name, show(machine[name])])
    if isinstance(fingerprint, Mapping) and fingerprint.get("machine_hash"):
        rows.append(["machine hash", fingerprint["machine_hash"]])
    elif machine:
        rows.append(["machine hash", f"{stable_hash(dict(machine))} (of the fields above)"])
    for name in ("device", "gpus", "model", "mediums"):
        if name in options:
            rows.append([f"option: {name}", show(options[name])])
    preset = options.get("preset")
    if isinstance(preset, Mapping):
        rows.append(["option: preset", f"{preset.get('name', '?')} — {preset.get('title', '')}".rstrip(" —")])
    return markdown(rows, ["field", "value"])


def machines_side_by_side(machines: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Machine fields of several fingerprints in columns; fields that differ are marked."""
    names = sorted({k for _, m in machines for k in m},
                   key=lambda k: (MACHINE_FIELDS.index(k) if k in MACHINE_FIELDS else 99, k))
    rows = []
    for name in names:
        values = [show(m.get(name)) for _, m in machines]
        rows.append([name + (" (differs)" if len(set(values)) > 1 else ""), *values])
    return markdown(rows, ["field", *(label for label, _ in machines)])


def show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def crossover_table(crossover: Mapping[str, Any], setup_of: Mapping[str, str]) -> str:
    rows = []
    for medium, entry in sorted(crossover.items()):
        if not isinstance(entry, Mapping):
            continue
        rate, lo, hi = (_num(entry.get(k)) for k in ("rate", "ci_low", "ci_high"))
        span = entry.get("range")
        where = (f"none in {fmt_number(span[0])}–{fmt_number(span[1])} req/s" if isinstance(span, list) and len(span) == 2
                 and all(_num(v) is not None for v in span) else "none in the measured range")
        text = (entry.get("note") or where) if rate is None else (
            f"{fmt_number(rate)}" + (f" [{fmt_number(lo)}, {fmt_number(hi)}]" if lo is not None and hi is not None else ""))
        rows.append([medium, setup_of.get(medium, "-"), entry.get("metric", "-"), text, entry.get("direction", "-")])
    return markdown(rows, ["medium", "set-up", "metric", "crossover rate req/s [95 % CI]", "direction"])


def capacity_table(capacity: Mapping[str, Any]) -> str:
    rows = []
    for key, c in sorted(capacity.items()):
        if not isinstance(c, Mapping):
            continue
        probes = c.get("probes_rps") if isinstance(c.get("probes_rps"), list) else []
        spread = _num(c.get("spread"))
        rows.append([key, fmt_number(_num(c.get("measured_rps"))), ", ".join(fmt_number(_num(p)) for p in probes) or "-",
                     "-" if spread is None else f"{spread:.0%}" + ("" if c.get("stable", True) else " (unstable)"),
                     ", ".join(fmt_number(_num(r)) for r in c.get("rates") or []) or "-", str(c.get("rates_from") or "-"),
                     str(c.get("gate") or "-")])
    return markdown(rows, ["deployment", "capacity req/s", "probes req/s", "spread", "ladder req/s", "rates from",
                           "capacity gate"])


def components_table(items: Sequence[tuple[RunView, Mapping[str, Mapping]]]) -> str:
    comps = list(dict.fromkeys(c for _, cs in items for c in cs))
    rows = []
    labels = series_labels([r for r, _ in items])
    for r, cs in items:
        row = [labels[r.index], r.load or "-"]
        for c in comps:
            v = cs.get(c, {})
            if "unavailable" in v:
                row.append("n/a")
            else:
                share = f" ({v['share']:.0%})" if _num(v.get("share")) is not None else ""
                row.append(fmt_number(_num(v.get("j_per_token"))) + share)
        rows.append(row)
    return markdown(rows, ["set-up", "load"] + [f"{c} J/token (share)" for c in comps])


__all__ = ["benchmark_table", "capacity_table", "components_table", "crossover_table", "deployments_table",
           "fingerprint_table", "machines_side_by_side",
           "markdown", "selfcheck_cells", "show"]
