"""pytest wiring of the deployment layer (registered by ``pytest_disagg.plugin``): the session's
pool, made on first use (``pool_of``); the deployments a session runs (``disagg_deployment_config``
parametrized over the selected mediums × prefix caching, a preset's configurations, or the attached
deployment; session scope, so tests are grouped by deployment) and the fixtures that hand them
out; and fault handling.

- At start: report what a killed earlier session left (``leftovers``); remove it with
  ``--disagg-cleanup-stale`` (ini ``disagg_cleanup_stale``).
- After each test on a deployment: if one of its processes died during the test, the test fails
  with that process's exit status and log tail, and the pool starts the deployment afresh for the
  next test that needs it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .. import progress
from ..attach import AttachError, attach
from ..baseline.pytest_plugin import SETTINGS_KEY
from ..baseline.store import LOCK_NAME
from ..energy.nodes import NodeEnergy
from ..energy.pytest_plugin import IDLE_SECONDS
from ..mediums import InstallInfo, Medium, detect_install
from ..optionspec import Option, add_options, option_value
from ..session import (ATTACH_KEY, ATTACHED_KEY, INSTALL_KEY, POOL_KEY, attach_config_of, existing_pool, options_of,
                      preset_of, registry_of)
from . import leftovers
from .launchers import make_launcher
from .pool import DeploymentConfig, DeploymentError, DeploymentPool

if TYPE_CHECKING:
    from ..options import DisaggOptions

OPTIONS = (
    Option("--disagg-cleanup-stale", "disagg_cleanup_stale", "end the processes and remove the temporary "
           "directories a killed earlier pytest-disagg session left (they are always reported at start)", switch=True),
)
_REPORT_KEY = pytest.StashKey[list]()
_REMOTE_KEY = pytest.StashKey[NodeEnergy]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS)


def _lock_files(config) -> list:
    try:
        return [config.stash[SETTINGS_KEY].directory / LOCK_NAME]
    except KeyError:            # the baseline wiring is not loaded (this plugin alone)
        return []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):       # xdist workers: the controller looks once
        return
    cleanup = option_value(config, "disagg_cleanup_stale")
    stale = leftovers.find(lock_files=_lock_files(config))
    lines: list[str] = []
    quiet = [s for s in stale if s.empty() and not s.bad_state]
    leftovers.clean(quiet)                   # a killed session that left nothing: forget its state
    loud = [s for s in stale if s not in quiet]
    if loud:
        lines.append("disagg: a killed earlier session left these behind:")
        for s in loud:
            lines += ["  " + line for line in s.lines()]
        if cleanup:
            lines += ["disagg: --disagg-cleanup-stale:"] + ["  " + line for line in leftovers.clean(loud)]
        else:
            lines.append("disagg: rerun with --disagg-cleanup-stale to end and remove them")
    config.stash[_REPORT_KEY] = lines


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash.get(_REPORT_KEY, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or "disagg_deployment_config" not in getattr(item, "funcargs", {}):
        return
    pool = existing_pool(item.config)
    if pool is None:
        return
    text = pool.check(item.funcargs["disagg_deployment_config"], stage=f"during test {item.name}")
    if text is None:
        return
    text += "\n(the pool starts this deployment again for the next test that needs it)"
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("disagg: a deployment process died", text))


def pool_of(config: pytest.Config) -> DeploymentPool:
    """The session's deployment pool, made the first time a test asks for a deployment."""
    if POOL_KEY not in config.stash:
        options = options_of(config)
        config.stash[POOL_KEY] = DeploymentPool(
            registry_of(config), logs_dir=options.logs_dir, server_timeout_s=options.server_timeout_s,
            max_live=options.max_live, cache_dir=session_cache_dir(config), launcher=launcher_of(options),
        )
    return config.stash[POOL_KEY]


def session_cache_dir(config: pytest.Config):
    """Checkpoints and vLLM's KV sizing for this session: under pytest's session temp dir."""
    factory = getattr(config, "_tmp_path_factory", None)
    return factory.getbasetemp() / "disagg-cache" if factory is not None else None


def launcher_of(options: DisaggOptions):
    if options.launcher == "ray":
        return make_launcher("ray", address=options.ray_address, resource=options.ray_resource,
                             num_gpus_per_server=1.0 if options.device == "cuda" else 0.0)
    return make_launcher(options.launcher)


def announced_get(pool: DeploymentPool, dc: DeploymentConfig, what: str | None = None):
    """``pool.get(dc)``, with the progress lines of a start-up ("starting X", "X ready in N s")
    when it has to start one."""
    if pool.is_live(dc):
        return pool.get(dc)
    with progress.current().starting(f"{what or dc.key()}, {dc.serving_mode()}"):   # graphs: start-up time
        return pool.get(dc)


def remote_energy(config: pytest.Config) -> NodeEnergy | None:
    """The session's :class:`~pytest_disagg.energy.nodes.NodeEnergy` when the servers run in Ray
    actors on GPUs (``--disagg-launcher=ray``, device cuda), made once; None otherwise (energy is
    read here)."""
    options = options_of(config)
    if options.launcher != "ray" or options.device != "cuda":
        return None
    if _REMOTE_KEY not in config.stash:
        from .launchers.ray_energy import RaySamplers   # optional dependency: ray (the ray extra)

        energy = NodeEnergy(RaySamplers(idle_seconds=IDLE_SECONDS))
        config.stash[_REMOTE_KEY] = energy
        config.add_cleanup(energy.close)
    return config.stash[_REMOTE_KEY]


def install_info(config) -> InstallInfo:
    if INSTALL_KEY not in config.stash:
        config.stash[INSTALL_KEY] = detect_install(list(registry_of(config)))
    return config.stash[INSTALL_KEY]


def attached_deployment(config):
    """The attached deployment, its URLs checked once per session (a test fails when they do not answer)."""
    if ATTACHED_KEY not in config.stash:
        try:
            config.stash[ATTACHED_KEY] = attach(config.stash[ATTACH_KEY])
        except AttachError as exc:
            config.stash[ATTACHED_KEY] = exc
    found = config.stash[ATTACHED_KEY]
    if isinstance(found, Exception):
        pytest.fail(str(found), pytrace=False)
    return found


def make_config(config, medium: str, **overrides) -> DeploymentConfig:
    """A DeploymentConfig for this session's device, GPUs and model, with overrides."""
    options = options_of(config)
    base = dict(medium=medium, model=options.model, device=options.device, gpus=options.gpus,
                kv_cache_dtype=options.kv_cache_dtype, eager=options.eager, weights=options.weights)
    if options.device == "cpu":
        base.update(block_size=32)  # the CPU attention backend needs multiples of 32
    base.update(overrides)
    dc = DeploymentConfig(**base)
    for changed in config.hook.pytest_disagg_deployment_config(config=config, deployment_config=dc):
        if changed is not None:
            dc = changed
    return dc


def selected_mediums(config) -> list[Medium]:
    """``--disagg-mediums`` as ``build_options`` resolved them, else every registered medium."""
    options = options_of(config)
    return list(options.mediums) if options.mediums else list(registry_of(config))


def unavailable_reason(config, medium: Medium) -> str | None:
    options = options_of(config)
    missing = install_info(config).missing_for(medium, options.device)
    return f"medium {medium.name} unavailable: " + "; ".join(missing) if missing else None


def deployment_params(config, wanted_mediums=None, wanted_caching=None) -> list:
    """The deployments a session runs: a preset's configurations, or mediums × prefix caching."""
    options = options_of(config)
    preset = preset_of(config)
    params = []
    attached = attach_config_of(config)
    if attached is not None:          # a deployment managed elsewhere: that one, and only it
        return [pytest.param(attached, id=attached.key())]
    if preset is not None:
        for c in preset.configurations(options.device, len(options.gpus)):
            if (options.mediums and c.medium not in options.medium_names) or (
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
        mediums = [m for m in mediums if m.name in wanted_mediums]
    for medium in mediums:
        for pc in options.prefix_caching:
            if wanted_caching is not None and pc not in wanted_caching:
                continue
            dc = make_config(config, medium.name, prefix_caching=pc)
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


@pytest.fixture(scope="session")
def disagg_get_deployment(pytestconfig):
    """Get a running deployment for a config, or skip the test with the reason it cannot run here."""
    def get(dc: DeploymentConfig):
        if dc is attach_config_of(pytestconfig):
            return attached_deployment(pytestconfig)
        # The session's registry, not the pool's lookup: a skipped medium must not make the pool
        # (its temp directory) in a session that would start nothing.
        reason = unavailable_reason(pytestconfig, registry_of(pytestconfig).get(dc.medium))
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
