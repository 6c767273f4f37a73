"""Option values: good ones parse, bad ones are usage errors naming the option and allowed values."""
from __future__ import annotations

import pytest

from pytest_disagg.mediums import MediumRegistry
from pytest_disagg.options import OptionError, build_options, parse_gpus



def opts(visible=0, **raw):
    return build_options(raw, MediumRegistry(), visible)


def test_defaults_are_cpu_every_medium_both_cachings():
    o = opts()
    assert o.device == "cpu" and o.gpus == () and o.mediums is None
    assert o.model == "tiny-llama-cpu" and o.prefix_caching == (False, True)


def test_gpus_select_cuda_and_gpu_model():
    o = opts(visible=2, gpus="0,1")
    assert o.device == "cuda" and o.gpus == (0, 1) and o.model == "tiny-llama-gpu"


@pytest.mark.parametrize("value, words", [
    ("0,0", ["--disagg-gpus", "twice"]),
    ("x", ["--disagg-gpus", "'x'", "not a GPU index"]),
    ("0,-1", ["--disagg-gpus", "not a GPU index"]),
    ("3", ["--disagg-gpus", "GPU 3 is not visible", "0..1"]),
])
def test_bad_gpus(value, words):
    with pytest.raises(OptionError) as info:
        parse_gpus(value, visible=2)
    for w in words:
        assert w in str(info.value)


def test_gpus_without_any_gpu():
    with pytest.raises(OptionError, match="no GPU at all"):
        opts(visible=0, gpus="0")


@pytest.mark.parametrize("raw, words", [
    ({"device": "tpu"}, ["--disagg-device", "auto, cpu, cuda"]),
    ({"device": "cuda"}, ["--disagg-device=cuda", "no GPU"]),
    ({"mediums": "nixl-cpu,carrier-pigeon"}, ["--disagg-mediums", "carrier-pigeon", "nixl-cpu", "colocated", "disk"]),
    ({"model": "no-such-model"}, ["--disagg-model", "tiny-llama-cpu"]),
    ({"server_timeout": "-3"}, ["--disagg-server-timeout", "greater than 0"]),
    ({"server_timeout": "soon"}, ["--disagg-server-timeout", "not a number"]),
    ({"prefix_caching": "maybe"}, ["--disagg-prefix-caching", "both, on, off"]),
    ({"weights": "real"}, ["--disagg-weights='real'", "dummy, checkpoint"]),
])
def test_bad_values_name_option_and_allowed(raw, words):
    with pytest.raises(OptionError) as info:
        opts(**raw)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("flag, weights", [([], "dummy"), (["--disagg-weights=checkpoint"], "checkpoint")])
def test_weights_reach_every_deployment_config(pytester, flag, weights):
    """``--disagg-weights`` is every session deployment's (the pool then loads a real checkpoint)."""
    pytester.makepyfile(
        "def test_weights(disagg_config):\n"
        f"    assert disagg_config('colocated').weights == {weights!r}\n"
        f"    assert disagg_config('disk', prefix_caching=True).weights == {weights!r}\n")
    result = pytester.runpytest("--disagg-save=no", *flag)
    result.assert_outcomes(passed=1)


def test_cpu_device_contradicts_gpus():
    with pytest.raises(OptionError, match="contradicts"):
        opts(visible=1, gpus="0", device="cpu")


def test_usage_error_through_pytest(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--disagg-mediums=warp-drive")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--disagg-mediums: unknown medium 'warp-drive'; known: colocated*"])


def test_ini_twin_is_read(pytester):
    pytester.makeini("[pytest]\ndisagg_prefix_caching = sideways\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--disagg-prefix-caching='sideways'*"])


def test_markers_registered_and_options_grouped(pytester):
    result = pytester.runpytest("--markers")
    for marker in ("disagg", "latency", "energy", "kv_reuse", "dvfs", "gpu"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{marker}*"])
    help_text = pytester.runpytest("--help").stdout.str()
    assert "disaggregated serving (pytest-disagg)" in help_text
    assert "--disagg-gpus" in help_text and "[ini: disagg_gpus]" in help_text


def test_gpu_marker_skips_without_gpu(pytester):
    pytester.makepyfile("import pytest\n@pytest.mark.gpu\ndef test_needs_gpu():\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a GPU*--disagg-gpus*"])


def test_mediums_are_resolved_once_to_the_registrys_objects():
    registry = MediumRegistry()
    o = build_options({"mediums": "disk, colocated"}, registry, 0)
    assert o.mediums == (registry.get("disk"), registry.get("colocated"))
    assert all(got is registry.get(got.name) for got in o.mediums)
    assert o.medium_names == ("disk", "colocated") and opts().medium_names is None


USER_MEDIUM = """
from pytest_disagg.mediums import Medium

def pytest_disagg_register_mediums(registry):
    registry.register(Medium(name="mine", summary="a user's", handoff="none", needs_binaries=("no-such-program-pd",)))
"""

USES_IT = """
from pytest_disagg.session import registry_of, results_of

def test_options_hold_the_registered_medium(disagg_options, pytestconfig):
    assert disagg_options.mediums[0] is registry_of(pytestconfig).get("mine")
    assert results_of(pytestconfig).options["mediums"] == ["mine"]      # the results JSON keeps names

def test_deployment(disagg_deployment):
    raise AssertionError("must skip: the medium's program is missing")
"""


def test_a_users_medium_goes_from_the_option_to_the_parameters_and_the_skip(pytester):
    pytester.makeconftest(USER_MEDIUM)
    pytester.makepyfile(test_mine=USES_IT)
    result = pytester.runpytest("-v", "-rs", "--disagg-mediums=mine", "--disagg-prefix-caching=off")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*test_deployment?mine-pc0?*SKIPPED*",
                                 "*medium mine unavailable: *program 'no-such-program-pd' is not on PATH*"])
