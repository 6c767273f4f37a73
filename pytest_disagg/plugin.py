"""pytest entry point: options, markers, the session's state, and the hooks that need every area.

The work lives in the library and each area's wiring (``wiring.AREA_PLUGINS``: deploy/, energy/,
baseline/, load/, export/, ab/ each have a ``pytest_plugin.py``); this module turns pytest's options
into a ``DisaggOptions`` and builds the session's state (``session.py``) at configure, writes the
results JSON before the servers stop, skips at collection what cannot run here, and hands tests
``disagg_options``, ``disagg_results``, ``disagg_preset`` and ``disagg_bench``. The deployment
fixtures (``disagg_deployment`` and its parametrization) are ``deploy/pytest_plugin.py``'s.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from . import hookspec, progress, runs, wiring  # wiring before the areas' plugins are imported (see wiring.py)
from .ab.pytest_plugin import ab_session
from .ab.runner import ABBench
from .attach import AttachError, load_attach
from .attach.dcgm import meter_for
from .baseline.pytest_plugin import machine_fingerprint
from .bench import Bench, optional_energy_meter, run_fingerprint
from .children import processes
from .deploy import DeploymentPool
from .deploy.pytest_plugin import pool_of, remote_energy
from .energy import nvmllib
from .energy.nodes import node_fingerprint
from .energy.pytest_plugin import energy_gpus
from .mediums import MediumRegistry
from .mediums.base import count_cuda_devices
from .options import OPTIONS, DisaggOptions, OptionError, build_options
from .optionspec import add_options, raw_values
from .presets import Preset, PresetError, load_preset
from .results import SessionResults
from .session import (ATTACH_KEY, OPTIONS_KEY, PRESET_KEY, REGISTRY_KEY, REMOTE_METER_KEY, RESULTS_KEY, existing_pool,
                      options_of, preset_of, results_of)

pytest_plugins = list(wiring.AREA_PLUGINS)
_KEPT_KEY = pytest.StashKey[str]()       # the terminal summary's line on where the run was kept

MARKERS = {
    "disagg": "runs real prefill/decode deployments; disagg(mediums=[...], prefix_caching=[...]) narrows them",
    "latency": "latency benchmarks (TTFT, TPOT, ITL, E2E) against baselines",
    "energy": "GPU energy per token/stage benchmarks (needs NVML)",
    "kv_reuse": "prefix-cache / KV reuse benchmarks",
    "dvfs": "prefill × decode GPU clock grid (needs --disagg-dvfs=dry-run|apply; never changes clocks in dry-run)",
    "gpu": "needs a GPU; skipped with a reason when none is selected",
    "preset": "belongs to a preset: skipped at collection (no deployment started) without --disagg-preset",
    "ray": "runs servers through --disagg-launcher=ray on a loopback Ray cluster (needs ray)",
}


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser):
    add_options(parser, OPTIONS)


def _raw_options(config) -> dict:
    return raw_values(config, OPTIONS)


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    registry = MediumRegistry()
    config.hook.pytest_disagg_register_mediums(registry=registry)
    raw = _raw_options(config)
    visible = count_cuda_devices() if (raw.get("gpus") or raw.get("device") == "cuda") else 0
    try:
        options = build_options(raw, registry, visible)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    preset = None
    if options.preset:
        try:
            preset = load_preset(options.preset, registry)
        except PresetError as exc:
            raise pytest.UsageError(f"--disagg-preset={options.preset!r}: {exc}") from None
    if options.attach is not None:
        try:
            config.stash[ATTACH_KEY] = load_attach(options.attach)
        except AttachError as exc:
            raise pytest.UsageError(f"--disagg-attach: {exc}") from None
    config.stash[REGISTRY_KEY] = registry
    config.stash[OPTIONS_KEY] = options
    config.stash[PRESET_KEY] = preset
    config.stash[RESULTS_KEY] = SessionResults(options={
        "device": options.device, "gpus": list(options.gpus), "model": options.model,
        "kv_cache_dtype": options.kv_cache_dtype,
        "mediums": list(options.medium_names) if options.mediums else None,
        "preset": preset.describe() if preset else None,
    })
    config.stash[REMOTE_METER_KEY] = _remote_meter
    processes.install_sigterm_handler()


def _remote_meter(config):
    """The meter for GPUs this process does not read itself: an attached deployment's DCGM-exporter,
    or the Ray nodes' samplers; None: local NVML."""
    dcgm = meter_for(config)
    return dcgm if dcgm is not None else remote_energy(config)


def pytest_sessionstart(session):
    # After every plugin's configure: the terminal reporter exists by now.
    progress.install(progress.for_terminal(session.config))


def pytest_unconfigure(config):
    progress.install(None)
    pool = existing_pool(config)
    if pool is not None:
        pool.close()
    processes.terminate_all()
    processes.restore_sigterm_handler()


def pytest_sessionfinish(session):
    config = session.config
    pool = existing_pool(config)
    try:   # write first: a Ctrl-C or SIGTERM while the servers stop must not lose the results
        _write_results(config, pool)
    finally:
        if pool is not None:
            _close_pool(session, pool)


def _write_results(config, pool: DeploymentPool | None) -> None:
    """The results document of a session that recorded runs: to ``--disagg-json`` and kept as a
    run (``runs.py``, unless ``--disagg-save=no``)."""
    results = config.stash.get(RESULTS_KEY, None)
    options = config.stash.get(OPTIONS_KEY, None)
    if results is None or options is None or not results.runs or (options.json_path is None and not options.save):
        return
    if pool is not None:
        results.derived.setdefault("deployment_starts", pool.starts)
        if pool.deaths:
            results.derived.setdefault("deployment_deaths", pool.deaths)
    if not results.fingerprint:      # the machine half baselines use: versions, driver, CUDA, GPU/CPU
        results.fingerprint = run_fingerprint(machine_fingerprint(config))
    document = results.to_json()
    config.hook.pytest_disagg_update_json(config=config, results=document)
    if options.json_path is not None:
        results.write(options.json_path, document)
    if options.save:
        config.stash[_KEPT_KEY] = _keep_run(config, options, results, document)


def _keep_run(config, options: DisaggOptions, results: SessionResults, document: dict) -> str:
    """Save the run; a directory that cannot be written costs the session its run, not its outcome."""
    root = Path(config.invocation_params.dir) / options.save_dir if options.save_dir else config.rootpath / runs.RUNS_DIR
    try:
        path = runs.save(results, document, root)
    except OSError as exc:
        return f"disagg: run not kept ({exc}); --disagg-save-dir=DIR puts runs elsewhere, --disagg-save=no stops this"
    return f"disagg: run {path.parent.name} kept in {path} (pytest-disagg compare previous latest)"


def _close_pool(session, pool: DeploymentPool) -> None:
    """Stop the session's servers. A Ctrl-C while they stop (pressed again, or once, late, when the
    last test had just ended) must neither leave them running nor end pytest with a traceback from
    inside this hook: the stopping goes on, and the session ends as interrupted (exit code 2)."""
    try:
        pool.close()
    except KeyboardInterrupt:
        sys.stderr.write("disagg: interrupted while the servers stopped; stopping them all the same\n")
        pool.close()
        session.exitstatus = pytest.ExitCode.INTERRUPTED


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before each test's fixtures: every live CPU deployment stopped until the test gets it
    (``DeploymentPool.pause_unused``), so a test runs on the machine's cores, not beside an idle
    nixl-cpu pair's polling threads."""
    pool = existing_pool(item.config)
    if pool is not None:
        pool.pause_unused()


def pytest_terminal_summary(terminalreporter, config):
    results = config.stash.get(RESULTS_KEY, None)
    if results is None or not results.runs:
        return
    for title, table in results.summary_tables():
        terminalreporter.write_sep("-", f"disagg: {title}")
        terminalreporter.write_line(table)
    options = options_of(config)
    if options.json_path is not None:
        terminalreporter.write_line(f"disagg: results written to {options.json_path}")
    if _KEPT_KEY in config.stash:
        terminalreporter.write_line(config.stash[_KEPT_KEY])


def pytest_disagg_update_fingerprint(config, fingerprint):
    """The launcher joins the machine fields when it is not the default (local keeps old hashes)."""
    options = config.stash.get(OPTIONS_KEY, None)
    if options is not None and options.launcher != "local":
        fingerprint["launcher"] = options.launcher
        pool = existing_pool(config)
        if options.launcher == "ray" and options.device == "cuda":
            pool = pool_of(config)
            pool.launcher.connect()     # the nodes' GPUs are fingerprinted whenever this runs first
            _add_node_gpus(config, fingerprint)
        if pool is not None:
            fingerprint.update({k: v for k, v in pool.launcher.describe().items() if k.startswith("ray_nodes")})


def _add_node_gpus(config, fingerprint) -> None:
    """Per Ray GPU node, its GPU models and driver, as its energy sampler reads them (NVML, read-only)."""
    from .deploy.launchers.ray_energy import gpu_nodes   # optional dependency: ray (the ray extra)

    nodes = gpu_nodes()
    if nodes:
        fingerprint["ray_node_gpus"] = node_fingerprint(remote_energy(config).identities(nodes))


def _no_energy_reason(config) -> str | None:
    """Why GPU energy cannot be metered here (decided once, at collection), or None."""
    if energy_gpus(config) is not None:
        return None
    options = options_of(config)
    if options.launcher == "ray" and options.device == "cuda":
        return None                 # read on the servers' nodes (energy/nodes.py), not here
    try:
        nvmllib.all_gpus()
    except nvmllib.NvmlUnavailable as exc:
        return f"no GPU energy measurement: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    """Skips decided here, before any fixture: a test that would skip in its body must not start a
    deployment first (fixtures set up in order, the deployment usually first)."""
    options = options_of(config)
    no_gpu = pytest.mark.skip(reason="needs a GPU: none selected (use --disagg-gpus=0[,1])")
    no_preset = pytest.mark.skip(reason="belongs to a preset: run with --disagg-preset=paper (or paper-quick)")
    energy_reason: list = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "disagg_deployment" in names and item.get_closest_marker("disagg") is None:
            item.add_marker(pytest.mark.disagg)
        if item.get_closest_marker("gpu") is not None and options.device != "cuda":
            item.add_marker(no_gpu)
        if item.get_closest_marker("preset") is not None and preset_of(config) is None:
            item.add_marker(no_preset)
        if "disagg_energy_meter" in names:
            if not energy_reason:
                energy_reason.append(_no_energy_reason(config))
            if energy_reason[0]:
                item.add_marker(pytest.mark.skip(reason=energy_reason[0]))


@pytest.fixture(scope="session")
def disagg_options(pytestconfig) -> DisaggOptions:
    """The validated options of this session."""
    return options_of(pytestconfig)


@pytest.fixture(scope="session")
def disagg_results(pytestconfig) -> SessionResults:
    """The session's results collector: ``disagg_results.add_run(benchmark=..., deployment=..., run=...)``."""
    return results_of(pytestconfig)


@pytest.fixture
def disagg_bench(request, disagg_results, disagg_baseline):
    """Run a workload on a deployment, record it in the results JSON and gate it against baselines
    (under ``--disagg-ab``: rounds on both sides, ``ab.runner.ABBench``)."""
    meter = optional_energy_meter(request)
    ab = ab_session(request.config)
    if ab is not None:
        return ABBench(request, disagg_results, disagg_baseline, meter, session=ab, pool=pool_of(request.config))
    return Bench(request, disagg_results, disagg_baseline, meter)


@pytest.fixture(scope="session")
def disagg_preset(pytestconfig) -> Preset | None:
    """The preset selected with --disagg-preset, or None."""
    return preset_of(pytestconfig)
