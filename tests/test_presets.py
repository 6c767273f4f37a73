"""Presets: the seed study's five set-ups as written, scaled on CPU, shared on one GPU; user files;
and errors that name the file and the field."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest

from pytest_disagg.deploy.pool import DeploymentConfig
from pytest_disagg.mediums import Medium, MediumRegistry
from pytest_disagg.presets import OVERRIDE_TYPES, PRESETS_DIR, PresetError, available_presets, load_preset

STUDY = {"co-1gpu": "colocated", "co-2gpus": "colocated-dp", "dis-gpu": "lmcache-nixl",
         "dis-cpu": "lmcache-cpu", "dis-disk": "lmcache-disk"}


@pytest.fixture(scope="module")
def paper():
    return load_preset("paper")


def ids(preset, device, n_gpus):
    """The test ids the plugin would give: DeploymentConfig built from each configuration's overrides."""
    return [DeploymentConfig(medium=c.medium, device=device, **c.overrides).key()
            for c in preset.configurations(device, n_gpus)]


def test_paper_names_the_five_setups(paper):
    assert "paper" in available_presets()
    assert {s.name: s.medium for s in paper.specs} == STUDY
    assert [s.name for s in paper.specs] == list(STUDY)
    assert {s.name for s in paper.specs if s.gpus == 2} == set(STUDY) - {"co-1gpu"}


def test_as_written_on_two_gpus(paper):
    configs = paper.configurations("cuda", 2)
    assert not any(c.scaled or c.shared_gpu for c in configs)
    for c in configs:
        assert c.overrides["model"] == "llama-3.2-3b-shape"
        assert c.overrides["max_model_len"] >= 16384 + 256
        assert c.overrides["prefix_caching"] is False
    assert ids(paper, "cuda", 2) == [f"{n}-pc0" for n in STUDY]
    work = paper.workload("cuda", 2)
    assert (work["input_tokens"], work["output_tokens"], work["rate"]) == (16384, 256, "inf")
    assert work["batches"] == [2, 4, 8, 16, 32, 64] and work["scaled"] is False


def test_one_gpu_shares_it_and_says_so(paper):
    configs = {c.label: c for c in paper.configurations("cuda", 1)}
    assert not configs["co-1gpu"].shared_gpu and configs["co-1gpu"].variant == ""
    for name in set(STUDY) - {"co-1gpu"}:
        assert configs[name].shared_gpu and configs[name].variant == "shared-gpu"
        assert "share a GPU" in configs[name].notes
    assert ids(paper, "cuda", 1) == ["co-1gpu-pc0"] + [f"{n}-pc0-shared-gpu" for n in list(STUDY)[1:]]
    assert paper.workload("cuda", 1)["input_tokens"] == 16384


def test_cpu_runs_it_scaled_and_labelled(paper):
    configs = paper.configurations("cpu", 0)
    assert [c.label for c in configs] == list(STUDY)
    for c in configs:
        assert c.scaled and c.variant == "scaled" and c.overrides["model"] == "tiny-llama-cpu"
        assert c.overrides["max_model_len"] >= 512 + 16
        assert "scaled for CPU" in c.notes
    dp = next(c for c in configs if c.label == "co-2gpus")
    assert "2 engines on disjoint core sets" in dp.notes
    assert MediumRegistry().get(dp.medium).replicas == 2
    assert ids(paper, "cpu", 0) == [f"{n}-pc0-scaled" for n in STUDY]
    work = paper.workload("cpu", 0)
    assert (work["input_tokens"], work["output_tokens"], work["batches"]) == (512, 16, [2, 4, 8])
    assert work["scaled"] is True and work["model"] == "tiny-llama-cpu"


def test_frequency_grid_and_metrics(paper):
    sweep = paper.frequency_sweep("cuda", 2)
    values = sweep["values_mhz"]
    assert values[0] == 360 and values[-1] == 1260 and 810 in values
    assert len({b - a for a, b in zip(values, values[1:])}) == 1          # evenly spaced
    assert sweep["apply_to"] == "both" and sweep["batch"] == 16
    assert paper.frequency_sweep("cpu", 0)["batch"] in paper.workload("cpu", 0)["batches"]
    assert set(paper.metrics) >= {"ttft_ms:p50", "tpot_ms:p50", "prompt_throughput",
                                  "output_throughput", "energy_j_per_token_by_component"}
    assert set(paper.energy_components) == {"gpu", "cpu-package", "dram", "node"}


def test_override_fields_are_deployment_fields():
    fields = {f.name for f in dataclasses.fields(DeploymentConfig)}
    assert set(OVERRIDE_TYPES) <= fields


USER = """
[preset]
model = "tiny-llama-cpu"
[workload]
input_tokens = 100
output_tokens = 8
batches = [1, 3]
[frequency]
grid_mhz = "500:900:3"
batch = 3
[metrics]
report = ["ttft_ms:p50"]
[scaled]
model = "tiny-llama-cpu"
input_tokens = 50
output_tokens = 4
batches = [1]
[[configuration]]
name = "mine"
medium = "disk"
[configuration.overrides]
max_num_seqs = 4
extra_server_args = ["--swap-space", "0"]
"""


def write(tmp_path, text, name="user.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_user_preset_from_a_path(tmp_path):
    preset = load_preset(str(write(tmp_path, USER)))
    assert preset.name == "user" and preset.path.parent == tmp_path
    (c,) = preset.configurations("cuda", 1)
    assert c.overrides["max_num_seqs"] == 4 and c.overrides["extra_server_args"] == ("--swap-space", "0")
    assert DeploymentConfig(medium=c.medium, **c.overrides).key() == "mine-pc0"
    assert preset.workload("cuda", 1)["batches"] == [1, 3]


def test_user_preset_may_name_a_registered_medium(tmp_path):
    text = USER.replace('medium = "disk"', 'medium = "pigeon"')
    with pytest.raises(PresetError, match=r"configuration\[0\]\.medium: unknown medium 'pigeon'"):
        load_preset(str(write(tmp_path, text)))
    registry = MediumRegistry()
    registry.register(Medium(name="pigeon", summary="carrier", handoff="storage"))
    assert load_preset(str(write(tmp_path, text)), registry).specs[0].medium == "pigeon"


@pytest.mark.parametrize("edit, message", [
    (('input_tokens = 100', 'input_token = 100'), r"workload\.input_tokens: missing \(is 'input_token' a typo\?\)"),
    (('input_tokens = 100', 'input_tokens = "100"'), r"workload\.input_tokens: '100' is not int"),
    (('batches = [1, 3]', 'batches = [3, 1]'), r"workload\.batches: .* increasing"),
    (('batches = [1, 3]', 'batches = []'), r"workload\.batches"),
    (('[frequency]', 'rate = 2.0\n[frequency]'), r"workload\.rate: 2.0 is not str"),
    (('[frequency]', 'rate = "poisson"\n[frequency]'), r"workload\.rate: 'poisson'"),
    (('batch = 3', 'batch = 3\nbatchs = 4'), r"frequency\.batchs: unknown field; known: apply_to, batch, grid_mhz"),
    (('grid_mhz = "500:900:3"', 'grid_mhz = "500-900"'), r"frequency\.grid_mhz: clock grid spec"),
    (('batch = 3', 'batch = 3\napply_to = "prefill"'), r"frequency\.apply_to: 'prefill'"),
    (('report = ["ttft_ms:p50"]', 'report = ["ttft_p50"]'), r"metrics\.report: 'ttft_p50': unknown metric"),
    (('report = ["ttft_ms:p50"]', 'report = ["ttft_ms"]'), r"metrics\.report: 'ttft_ms': a per-request metric needs a statistic"),
    (('report = ["ttft_ms:p50"]', 'report = ["ttft_ms:median"]'), r"needs a statistic, e\.g\. ttft_ms:p50"),
    (('report = ["ttft_ms:p50"]', 'report = ["output_throughput:p50"]'), r"one figure per run; drop ':p50'"),
    (('report = ["ttft_ms:p50"]', 'report = []\nenergy_components = ["gpus"]'), r"metrics\.energy_components"),
    (('name = "mine"', 'name = "my set-up"'), r"configuration\[0\]\.name"),
    (('max_num_seqs = 4', 'max_model_len = 4'), r"overrides\.max_model_len: not a deployment field"),
    (('max_num_seqs = 4', 'max_num_seqs = 4.5'), r"overrides\.max_num_seqs: 4.5 is not int"),
    (('extra_server_args = ["--swap-space", "0"]', 'extra_server_args = ["--x", 1]'), r"extra_server_args"),
    (('[preset]\n', '[preset]\nmax_model_len = 64\n'), r"max_model_len 64 does not cover 100 input \+ 8 output"),
    (('[preset]\n', '[preset]\nmax_model_len = 99999\n'), r"exceed model tiny-llama-cpu's max_position_embeddings"),
    (('model = "tiny-llama-cpu"\n[workload]', 'model = "no-such-model"\n[workload]'), r"model 'no-such-model'"),
    (('[preset]', '[presets]'), r"user\.toml: preset: missing table \(is 'presets' a typo\?\)"),
])
def test_bad_field_names_file_and_field(tmp_path, edit, message):
    old, new = edit
    text = textwrap.dedent(USER)
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(PresetError, match=message) as info:
        load_preset(str(path))
    assert str(path) in str(info.value)


def test_duplicate_configuration_name(tmp_path):
    text = textwrap.dedent(USER) + '\n[[configuration]]\nname = "mine"\nmedium = "colocated"\n'
    with pytest.raises(PresetError, match=r"configuration\[1\]\.name: 'mine' is used twice"):
        load_preset(str(write(tmp_path, text)))


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(PresetError, match=r"--disagg-preset='papr': unknown preset; known: .*paper"):
        load_preset("papr")
    with pytest.raises(PresetError, match="no such file"):
        load_preset(str(tmp_path / "none.toml"))
    with pytest.raises(PresetError, match="not valid TOML"):
        load_preset(str(write(tmp_path, "[preset\n")))
    with pytest.raises(PresetError, match="at least one"):
        load_preset(str(write(tmp_path, USER.split("[[configuration]]")[0])))


def test_machine_description_is_checked(paper):
    with pytest.raises(PresetError, match="device must be"):
        paper.configurations("tpu", 1)
    with pytest.raises(PresetError, match="no GPU selected"):
        paper.workload("cuda", 0)


def test_presets_dir_holds_only_loadable_presets():
    for name in available_presets():
        assert load_preset(name).path == PRESETS_DIR / f"{name}.toml"
