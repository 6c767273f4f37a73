"""The preset's model has the study's KV size, and energy per component keeps "unavailable" apart
from zero."""
from __future__ import annotations

import json

import pytest

from pytest_disagg.energy import attribute
from pytest_disagg.energy.results import EnergyFigure, EnergyWindow
from pytest_disagg.models import MODELS_DIR, resolve_model
from pytest_disagg.presets import energy_per_component, load_preset

GIB = 1024**3


def test_llama_3b_shape_is_the_study_model():
    cfg = json.loads((MODELS_DIR / "llama-3.2-3b-shape" / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (28, 3072, 24)
    assert (cfg["num_key_value_heads"], cfg["head_dim"], cfg["torch_dtype"]) == (8, 128, "bfloat16")
    assert resolve_model("llama-3.2-3b-shape").kv_bytes_per_token("bfloat16") == 112 * 1024


def test_gpu_tiny_model_matches_what_the_lent_h100_moved():
    # NixlConnector on the H100 moved 64 KiB per token with this config (shared/device/README.md).
    assert resolve_model("tiny-llama-gpu").kv_bytes_per_token("bfloat16") == 64 * 1024


def test_paper_batches_span_the_studys_kv_range():
    """PAPER.md: batch 2 to 64 of 16,384-token prompts is "3.5 to 112 GB" of KV (GiB, in fact)."""
    paper = load_preset("paper")
    work = paper.workload("cuda", 2)
    per_token = resolve_model(work["model"]).kv_bytes_per_token("bfloat16")
    sizes = [b * work["input_tokens"] * per_token / GIB for b in work["batches"]]
    assert sizes[0] == pytest.approx(3.5) and sizes[-1] == pytest.approx(112.0)


def window(joules_by_gpu):
    return EnergyWindow(name="run", seconds=10.0, joules_by_gpu=joules_by_gpu, reliable=True,
                        method="counter", counter_period_s=0.1)


def test_energy_per_component_with_one_component_unavailable():
    host = [
        EnergyFigure(component="cpu-package", joules=300.0, seconds=10.0, method="rapl"),
        EnergyFigure.missing("dram", "rapl", "no RAPL dram zone under /sys/class/powercap"),
        EnergyFigure(component="node", joules=2000.0, seconds=10.0, method="ipmi-power-integral"),
    ]
    att = attribute(window({0: 600.0, 1: 100.0}), prefill_gpus=[0], decode_gpus=[1],
                    prompt_tokens=900, output_tokens=100, requests=4, host=host)
    rows = energy_per_component(att)
    assert rows["gpu"]["joules"] == 700.0 and rows["gpu"]["j_per_token"] == pytest.approx(0.7)
    assert rows["cpu-package"]["j_per_token"] == pytest.approx(0.3)
    assert rows["gpu"]["share"] == pytest.approx(0.7) and rows["cpu-package"]["share"] == pytest.approx(0.3)
    assert "some unavailable" in rows["gpu"]["share_of"]
    assert rows["dram"] == {"unavailable": "no RAPL dram zone under /sys/class/powercap"}
    # The node contains the others: a figure per token, but no share to sum with them.
    assert rows["node"]["j_per_token"] == pytest.approx(2.0) and "share" not in rows["node"]


def test_energy_per_component_complete_and_gpu_only():
    host = [EnergyFigure(component="cpu-package", joules=50.0, seconds=1.0, method="rapl"),
            EnergyFigure(component="dram", joules=50.0, seconds=1.0, method="rapl")]
    att = attribute(window({0: 100.0}), prefill_gpus=[0], decode_gpus=[0],
                    prompt_tokens=150, output_tokens=50, requests=2, host=host)
    rows = energy_per_component(att)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert rows["dram"]["share"] == pytest.approx(0.25) and rows["gpu"]["share_of"] == "measured components"
    gpu_only = energy_per_component(attribute(window({0: 10.0}), prefill_gpus=[0], decode_gpus=[0],
                                              prompt_tokens=0, output_tokens=0, requests=0))
    assert gpu_only == {"gpu": {"joules": 10.0, "j_per_token": None, "share": 1.0,
                                "share_of": "measured components"}}
