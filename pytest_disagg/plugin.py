"""pytest entry point: options, markers and the deployment fixtures. Thin on purpose.

The work lives in the library (deploy/, load/, energy/, baseline/); this module only turns
pytest's options into a ``DisaggOptions``, keeps one ``DeploymentPool`` per session in the config
stash, and parametrizes ``disagg_deployment_config`` (session scope, so tests are grouped by
deployment) over the selected mediums × prefix caching or a preset's configurations;
``disagg_deployment`` gets each test its running deployment from the pool.
"""
from __future__ import annotations

import sys

import pytest

from . import hookspec, progress
from .deploy import DeploymentConfig, DeploymentError, DeploymentPool
from .deploy import processes
from .mediums import InstallInfo, MediumRegistry, detect_install
from .mediums.base import count_cuda_devices
from .options import OPTIONS, DisaggOptions, OptionError, add_options, build_options, raw_values
from .presets import Preset, PresetError, load_preset
from .results import SessionResults

pytest_plugins = [
    "pytest_disagg.energy.pytest_plugin",
    "pytest_disagg.baseline.pytest_plugin",
    "pytest_disagg.load.pytest_plugin",
    "pytest_disagg.export.pytest_plugin",
    "pytest_disagg.ab.pytest_plugin",
    "pytest_disagg.deploy.pytest_plugin",
]

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

_OPTIONS_KEY = pytest.StashKey[DisaggOptions]()
_POOL_KEY = pytest.StashKey[DeploymentPool]()
_REGISTRY_KEY = pytest.StashKey[MediumRegistry]()
_INSTALL_KEY = pytest.StashKey[InstallInfo]()
_RESULTS_KEY = pytest.StashKey[SessionResults]()
_PRESET_KEY = pytest.StashKey["Preset | None"]()
_ATTACH_KEY = pytest.StashKey[object]()          # the attach file's AttachConfig
_ATTACHED_KEY = pytest.StashKey[object]()        # its AttachedDeployment, once checked


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
        from .attach import AttachError, load_attach

        try:
            config.stash[_ATTACH_KEY] = load_attach(options.attach)
        except AttachError as exc:
            raise pytest.UsageError(f"--disagg-attach: {exc}") from None
    config.stash[_REGISTRY_KEY] = registry
    config.stash[_OPTIONS_KEY] = options
    config.stash[_PRESET_KEY] = preset
    config.stash[_RESULTS_KEY] = SessionResults(options={
        "device": options.device, "gpus": list(options.gpus), "model": options.model,
        "kv_cache_dtype": options.kv_cache_dtype,
        "mediums": list(options.mediums) if options.mediums else None,
        "preset": preset.describe() if preset else None,
    })
    processes.install_sigterm_handler()


def pytest_sessionstart(session):
    # After every plugin's configure: the terminal reporter exists by now.
    progress.install(progress.for_terminal(session.config))


def pytest_unconfigure(config):
    progress.install(None)
    pool = config.stash.get(_POOL_KEY, None)
    if pool is not None:
        pool.close()
    processes.terminate_all()
    processes.restore_sigterm_handler()


def pytest_sessionfinish(session):
    config = session.config
    pool = config.stash.get(_POOL_KEY, None)
    results = config.stash.get(_RESULTS_KEY, None)
    options = config.stash.get(_OPTIONS_KEY, None)
    try:   # write first: a Ctrl-C or SIGTERM while the servers stop must not lose the results
        if results is not None and options is not None and options.json_path is not None and results.runs:
            if pool is not None:
                results.derived.setdefault("deployment_starts", pool.starts)
                if pool.deaths:
                    results.derived.setdefault("deployment_deaths", pool.deaths)
            if not results.fingerprint:      # the machine half baselines use: versions, driver, CUDA, GPU/CPU
                from .bench import run_fingerprint

                results.fingerprint = run_fingerprint(config)
            document = results.to_json()
            config.hook.pytest_disagg_update_json(config=config, results=document)
            results.write(options.json_path, document)
    finally:
        if pool is not None:
            _close_pool(session, pool)


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
    results = config.stash.get(_RESULTS_KEY, None)
    if results is None or not results.runs:
        return
    for title, table in results.summary_tables():
        terminalreporter.write_sep("-", f"disagg: {title}")
        terminalreporter.write_line(table)
    options = config.stash[_OPTIONS_KEY]
    if options.json_path is not None:
        terminalreporter.write_line(f"disagg: results written to {options.json_path}")


def disagg_options_of(config) -> DisaggOptions:
    return config.stash[_OPTIONS_KEY]


def install_info(config) -> InstallInfo:
    if _INSTALL_KEY not in config.stash:
        config.stash[_INSTALL_KEY] = detect_install(list(config.stash[_REGISTRY_KEY]))
    return config.stash[_INSTALL_KEY]


def existing_pool(config) -> DeploymentPool | None:
    """The session's pool if a deployment was asked for, else None (nothing is created)."""
    return config.stash.get(_POOL_KEY, None)


def pool_of(config) -> DeploymentPool:
    if _POOL_KEY not in config.stash:
        options = config.stash[_OPTIONS_KEY]
        config.stash[_POOL_KEY] = DeploymentPool(
            config.stash[_REGISTRY_KEY], logs_dir=options.logs_dir, server_timeout_s=options.server_timeout_s,
            max_live=options.max_live, cache_dir=session_cache_dir(config), launcher=launcher_of(options),
        )
    return config.stash[_POOL_KEY]


def session_cache_dir(config):
    """Checkpoints and vLLM's KV sizing for this session: under pytest's session temp dir."""
    factory = getattr(config, "_tmp_path_factory", None)
    return factory.getbasetemp() / "disagg-cache" if factory is not None else None
def launcher_of(options: DisaggOptions):
    from .deploy.launchers import make_launcher

    if options.launcher == "ray":
        return make_launcher("ray", address=options.ray_address, resource=options.ray_resource,
                             num_gpus_per_server=1.0 if options.device == "cuda" else 0.0)
    return make_launcher(options.launcher)


def pytest_disagg_update_fingerprint(config, fingerprint):
    """The launcher joins the machine fields when it is not the default (local keeps old hashes)."""
    options = config.stash.get(_OPTIONS_KEY, None)
    if options is not None and options.launcher != "local":
        fingerprint["launcher"] = options.launcher
        pool = config.stash.get(_POOL_KEY, None)
        if options.launcher == "ray" and options.device == "cuda":
            pool = pool_of(config)
            pool.launcher.connect()     # the nodes' GPUs are fingerprinted whenever this runs first
            _add_node_gpus(config, fingerprint)
        if pool is not None:
            fingerprint.update({k: v for k, v in pool.launcher.describe().items() if k.startswith("ray_nodes")})


def _add_node_gpus(config, fingerprint) -> None:
    """Per Ray GPU node, its GPU models and driver, as its energy sampler reads them (NVML, read-only)."""
    from .deploy.launchers.ray_energy import gpu_nodes
    from .energy.nodes import node_fingerprint
    from .energy.pytest_plugin import remote_energy

    nodes = gpu_nodes()
    if nodes:
        fingerprint["ray_node_gpus"] = node_fingerprint(remote_energy(config).identities(nodes))


def attached_deployment(config):
    """The attached deployment, its URLs checked once per session (a test fails when they do not answer)."""
    from .attach import AttachError, attach

    if _ATTACHED_KEY not in config.stash:
        try:
            config.stash[_ATTACHED_KEY] = attach(config.stash[_ATTACH_KEY])
        except AttachError as exc:
            config.stash[_ATTACHED_KEY] = exc
    found = config.stash[_ATTACHED_KEY]
    if isinstance(found, Exception):
        pytest.fail(str(found), pytrace=False)
    return found


def make_config(config, medium: str, **overrides) -> DeploymentConfig:
    """A DeploymentConfig for this session's device, GPUs and model, with overrides."""
    options = config.stash[_OPTIONS_KEY]
    base = dict(medium=medium, model=options.model, device=options.device, gpus=options.gpus,
                kv_cache_dtype=options.kv_cache_dtype, eager=options.eager)
    if options.device == "cpu":
        base.update(block_size=32)  # the CPU attention backend needs multiples of 32
    base.update(overrides)
    dc = DeploymentConfig(**base)
    for changed in config.hook.pytest_disagg_deployment_config(config=config, deployment_config=dc):
        if changed is not None:
            dc = changed
    return dc


def selected_mediums(config) -> list[str]:
    options = config.stash[_OPTIONS_KEY]
    registry = config.stash[_REGISTRY_KEY]
    return list(options.mediums) if options.mediums else registry.names()


def unavailable_reason(config, medium_name: str) -> str | None:
    options = config.stash[_OPTIONS_KEY]
    medium = config.stash[_REGISTRY_KEY].get(medium_name)
    missing = install_info(config).missing_for(medium, options.device)
    return f"medium {medium_name} unavailable: " + "; ".join(missing) if missing else None


def deployment_params(config, wanted_mediums=None, wanted_caching=None) -> list:
    """The deployments a session runs: a preset's configurations, or mediums × prefix caching."""
    options = config.stash[_OPTIONS_KEY]
    preset = config.stash[_PRESET_KEY]
    params = []
    attached = config.stash.get(_ATTACH_KEY, None)
    if attached is not None:          # a deployment managed elsewhere: that one, and only it
        return [pytest.param(attached, id=attached.key())]
    if preset is not None:
        for c in preset.configurations(options.device, len(options.gpus)):
            if (options.mediums and c.medium not in options.mediums) or (
                    wanted_mediums is not None and c.medium not in wanted_mediums):
                continue
            overrides = dict(c.overrides)
            if options.device == "cuda":
                overrides["gpus"] = options.gpus[: c.gpus_needed]
            dc = make_config(config, c.medium, **overrides)
            if wanted_caching is not None and dc.prefix_caching not in wanted_caching:
                continue
            params.append(pytest.param(dc, id=dc.key()))
        return params
    mediums = selected_mediums(config)
    if wanted_mediums is not None:
        mediums = [m for m in mediums if m in wanted_mediums]
    for medium in mediums:
        for pc in options.prefix_caching:
            if wanted_caching is not None and pc not in wanted_caching:
                continue
            dc = make_config(config, medium, prefix_caching=pc)
            params.append(pytest.param(dc, id=dc.key()))
    return params


def pytest_generate_tests(metafunc):
    if "disagg_deployment_config" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("disagg")
    kwargs = marker.kwargs if marker is not None else {}
    params = deployment_params(metafunc.config, kwargs.get("mediums"), kwargs.get("prefix_caching"))
    # Session scope on the configuration makes pytest group the tests by deployment, so each
    # starts once when nothing else needs the pool's slots in between.
    metafunc.parametrize("disagg_deployment_config", params, indirect=True, scope="session")


def _no_energy_reason(config) -> str | None:
    """Why GPU energy cannot be metered here (decided once, at collection), or None."""
    from .energy import nvmllib
    from .energy.pytest_plugin import energy_gpus

    if energy_gpus(config) is not None:
        return None
    options = config.stash[_OPTIONS_KEY]
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
    options = config.stash[_OPTIONS_KEY]
    no_gpu = pytest.mark.skip(reason="needs a GPU: none selected (use --disagg-gpus=0[,1])")
    no_preset = pytest.mark.skip(reason="belongs to a preset: run with --disagg-preset=paper (or paper-quick)")
    energy_reason: list = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "disagg_deployment" in names and item.get_closest_marker("disagg") is None:
            item.add_marker(pytest.mark.disagg)
        if item.get_closest_marker("gpu") is not None and options.device != "cuda":
            item.add_marker(no_gpu)
        if item.get_closest_marker("preset") is not None and config.stash[_PRESET_KEY] is None:
            item.add_marker(no_preset)
        if "disagg_energy_meter" in names:
            if not energy_reason:
                energy_reason.append(_no_energy_reason(config))
            if energy_reason[0]:
                item.add_marker(pytest.mark.skip(reason=energy_reason[0]))


@pytest.fixture(scope="session")
def disagg_options(pytestconfig) -> DisaggOptions:
    """The validated options of this session."""
    return pytestconfig.stash[_OPTIONS_KEY]


@pytest.fixture(scope="session")
def disagg_results(pytestconfig) -> SessionResults:
    """The session's results collector: ``disagg_results.add_run(benchmark=..., deployment=..., run=...)``."""
    return pytestconfig.stash[_RESULTS_KEY]


def results_of(config) -> SessionResults:
    return config.stash[_RESULTS_KEY]


@pytest.fixture
def disagg_bench(request, disagg_results, disagg_baseline):
    """Run a workload on a deployment, record it in the results JSON and gate it against baselines."""
    from .bench import Bench, optional_energy_meter

    return Bench(request, disagg_results, disagg_baseline, optional_energy_meter(request))


@pytest.fixture(scope="session")
def disagg_preset(pytestconfig) -> Preset | None:
    """The preset selected with --disagg-preset, or None."""
    return pytestconfig.stash[_PRESET_KEY]


@pytest.fixture(scope="session")
def disagg_pool(pytestconfig) -> DeploymentPool:
    """The session's deployment pool: ``disagg_pool.get(disagg_config("nixl-cpu"))``."""
    return pool_of(pytestconfig)


@pytest.fixture(scope="session")
def disagg_config(pytestconfig):
    """Build a DeploymentConfig for this session's device/GPUs/model: ``disagg_config("disk", prefix_caching=True)``."""
    def build(medium: str, **overrides) -> DeploymentConfig:
        return make_config(pytestconfig, medium, **overrides)
    return build


def announced_get(pool: DeploymentPool, dc: DeploymentConfig, what: str | None = None):
    """``pool.get(dc)``, with the progress lines of a start-up ("starting X", "X ready in N s")
    when it has to start one."""
    if pool.is_live(dc):
        return pool.get(dc)
    with progress.current().starting(f"{what or dc.key()}, {dc.serving_mode()}"):   # graphs: start-up time
        return pool.get(dc)


@pytest.fixture(scope="session")
def disagg_get_deployment(pytestconfig):
    """Get a running deployment for a config, or skip the test with the reason it cannot run here."""
    def get(dc: DeploymentConfig):
        if dc is pytestconfig.stash.get(_ATTACH_KEY, None):
            return attached_deployment(pytestconfig)
        reason = unavailable_reason(pytestconfig, dc.medium)
        if reason:
            pytest.skip(reason)
        try:
            return announced_get(pool_of(pytestconfig), dc)
        except DeploymentError as exc:
            pytest.fail(f"deployment {dc.key()} did not come up:\n{exc}", pytrace=False)
    return get


@pytest.fixture(scope="session")
def disagg_deployment_config(request) -> DeploymentConfig:
    """The configuration this test runs on (one parameter per selected medium x prefix caching,
    or per preset configuration)."""
    return request.param


@pytest.fixture
def disagg_deployment(disagg_deployment_config, disagg_get_deployment):
    """A running deployment (proxy URL, prefill/decode handles, medium, config), one per parameter.

    Looked up in the pool for every test, not cached for the session: a test that starts other
    deployments (a benchmark comparing prefix caching on and off, a reference) may have made the
    pool stop this one, and then it is started again rather than handed out dead."""
    return disagg_get_deployment(disagg_deployment_config)
