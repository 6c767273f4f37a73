"""Attribution: split stages when each has its own GPUs, `shared` whole-GPU figures otherwise."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from pytest_disagg.energy.attribution import attribute, gpus_by_role
from pytest_disagg.energy.results import EnergyFigure, EnergyWindow


def window(joules, **kw):
    return EnergyWindow(name="run", seconds=10.0, joules_by_gpu=joules, reliable=True, method="counter",
                        counter_period_s=0.1, **kw)


def test_split_stages_give_per_prompt_and_per_output_token_figures():
    a = attribute(window({0: 3000.0, 1: 1000.0, 2: 99.0}), prefill_gpus=[0], decode_gpus=[1],
                  prompt_tokens=60_000, output_tokens=2_000, requests=20)
    assert not a.shared
    pre, dec = a.stage("prefill"), a.stage("decode")
    assert (pre.joules, pre.tokens, pre.token_kind) == (3000.0, 60_000, "prompt")
    assert pre.joules_per_token == pytest.approx(0.05)
    assert (dec.joules, dec.tokens, dec.token_kind) == (1000.0, 2_000, "output")
    assert dec.joules_per_token == pytest.approx(0.5)
    assert a.gpu_joules == 4000.0                      # GPU 2 is not this deployment's
    assert a.joules_per_request == pytest.approx(200.0)
    assert a.joules_per_token == pytest.approx(4000.0 / 62_000)
    with pytest.raises(KeyError):
        a.stage("shared")


def test_colocated_gpu_is_shared_and_never_split():
    a = attribute(window({0: 4000.0}), prefill_gpus=[0], decode_gpus=[0],
                  prompt_tokens=60_000, output_tokens=2_000, requests=20)
    assert a.shared
    (stage,) = a.stages
    assert (stage.role, stage.gpus, stage.joules, stage.token_kind) == ("shared", (0,), 4000.0, "prompt+output")
    assert stage.joules_per_token == pytest.approx(4000.0 / 62_000)
    for role in ("prefill", "decode"):
        with pytest.raises(KeyError):
            a.stage(role)
    assert "energy_prefill_j" not in a.scalars()
    assert a.scalars()["energy_shared_j_per_prompt_output_token"] == pytest.approx(4000.0 / 62_000)


def test_partial_overlap_is_shared_over_all_gpus():
    a = attribute(window({0: 1.0, 1: 2.0, 2: 4.0}), prefill_gpus=[0, 1], decode_gpus=[1, 2],
                  prompt_tokens=10, output_tokens=10, requests=1)
    assert a.shared and a.stages[0].gpus == (0, 1, 2) and a.stages[0].joules == 7.0


def test_host_components_join_the_total_only_when_available():
    host = (EnergyFigure("cpu-package", 500.0, 10.0, "rapl"),
            EnergyFigure.missing("dram", "rapl", "no RAPL dram zone", 10.0))
    a = attribute(window({0: 1000.0, 1: 1000.0}), prefill_gpus=[0], decode_gpus=[1],
                  prompt_tokens=100, output_tokens=100, requests=4, host=host)
    assert a.total_joules == 2500.0 and a.gpu_joules == 2000.0
    assert a.total_components == ("gpu", "cpu-package") and a.unavailable_components == ("dram",)
    s = a.scalars()
    assert s["energy_cpu_package_j"] == 500.0 and "energy_dram_j" not in s
    doc = json.loads(json.dumps(a.to_json()))
    assert doc["host"][1]["joules"] is None and doc["host"][1]["unavailable"] == "no RAPL dram zone"


def test_zero_counts_give_no_ratio_rather_than_a_division_error():
    a = attribute(window({0: 10.0, 1: 10.0}), prefill_gpus=[0], decode_gpus=[1],
                  prompt_tokens=0, output_tokens=0, requests=0)
    assert a.joules_per_request is None and a.joules_per_token is None
    assert a.stage("prefill").joules_per_token is None
    assert "energy_j_per_request" not in a.scalars()


def test_bad_inputs_are_clear_errors():
    w = window({0: 1.0})
    with pytest.raises(ValueError, match=r"no figure for GPU\(s\) \[1\]"):
        attribute(w, prefill_gpus=[0], decode_gpus=[1], prompt_tokens=1, output_tokens=1, requests=1)
    with pytest.raises(ValueError, match="both prefill_gpus and decode_gpus"):
        attribute(w, prefill_gpus=[], decode_gpus=[0], prompt_tokens=1, output_tokens=1, requests=1)
    with pytest.raises(ValueError, match="prompt_tokens must be a non-negative int"):
        attribute(w, prefill_gpus=[0], decode_gpus=[0], prompt_tokens=-1, output_tokens=1, requests=1)


def test_idle_subtraction_and_reliability_carry_through():
    w = window({0: 100.0, 1: 100.0}, idle_watts_by_gpu={0: 5.0, 1: 5.0}).minus_idle()
    a = attribute(w, prefill_gpus=[0], decode_gpus=[1], prompt_tokens=1, output_tokens=1, requests=1)
    assert a.idle_subtracted and a.gpu_joules == pytest.approx(100.0)
    shaky = EnergyFigure("cpu-package", 1.0, 10.0, "rapl", reliable=False)
    b = attribute(window({0: 1.0, 1: 1.0}), prefill_gpus=[0], decode_gpus=[1], prompt_tokens=1,
                  output_tokens=1, requests=1, host=(shaky,))
    assert not b.reliable


def test_roles_from_deployment_servers():
    servers = [SimpleNamespace(role="prefill", gpu_indices=(0, 1)), SimpleNamespace(role="decode", gpu_indices=(2,))]
    assert gpus_by_role(servers) == {"prefill": (0, 1), "decode": (2,)}
    colocated = [SimpleNamespace(role="colocated", gpu_indices=(0,)), SimpleNamespace(role="colocated", gpu_indices=(1,))]
    assert gpus_by_role(colocated) == {"prefill": (0, 1), "decode": (0, 1)}
    with pytest.raises(ValueError, match="unknown server role"):
        gpus_by_role([SimpleNamespace(role="router", gpu_indices=())])


def test_the_energy_record_has_exactly_its_typed_keys():
    from pytest_disagg.energy.attribution import EnergyRecord, attribute
    from pytest_disagg.energy.results import EnergyWindow

    window = EnergyWindow(name="w", seconds=2.0, joules_by_gpu={0: 30.0}, reliable=True, method="counter",
                          counter_period_s=0.1)
    record = attribute(window, prefill_gpus=[0], decode_gpus=[0], prompt_tokens=20, output_tokens=10,
                       requests=2).record()
    assert set(record) == set(EnergyRecord.__required_keys__)       # one machine: no gpu_nodes
    assert record["joules_per_token"] == 1.0 and record["components"]["gpu"]["j_per_token"] == 1.0
    assert "by_component" not in record and "j_per_token" not in record
    merged = dataclasses.replace(window, gpu_nodes={0: {"node": "n1", "index": 3}})   # GPUs on other nodes
    record = attribute(merged, prefill_gpus=[0], decode_gpus=[0], prompt_tokens=20, output_tokens=10,
                       requests=2).record()
    assert set(record) == set(EnergyRecord.__annotations__) and EnergyRecord.__optional_keys__ == {"gpu_nodes"}
    assert record["gpu_nodes"] == {"0": {"node": "n1", "index": 3}}
