"""pytest wiring of the deployment layer (registered by ``pytest_disagg.plugin``): the session's
pool, made on first use (``pool_of``), and its fault handling.

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
from ..baseline.pytest_plugin import SETTINGS_KEY
from ..baseline.store import LOCK_NAME
from ..energy.nodes import NodeEnergy
from ..energy.pytest_plugin import IDLE_SECONDS
from ..session import POOL_KEY, existing_pool, options_of, registry_of
from . import leftovers
from .launchers import make_launcher
from .pool import DeploymentConfig, DeploymentPool

if TYPE_CHECKING:
    from ..options import DisaggOptions

CLEANUP = ("--disagg-cleanup-stale", "disagg_cleanup_stale",
           "end the processes and remove the temporary directories a killed earlier pytest-disagg session left")
_REPORT_KEY = pytest.StashKey[list]()
_REMOTE_KEY = pytest.StashKey[NodeEnergy]()


def pytest_addoption(parser: pytest.Parser) -> None:
    flag, ini, help_text = CLEANUP
    parser.getgroup("disagg").addoption(flag, dest=ini, action="store_true", default=None,
                                        help=f"{help_text} [ini: {ini}]")
    parser.addini(ini, help_text, type="bool", default=False)


def _lock_files(config) -> list:
    try:
        return [config.stash[SETTINGS_KEY].directory / LOCK_NAME]
    except KeyError:            # the baseline wiring is not loaded (this plugin alone)
        return []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):       # xdist workers: the controller looks once
        return
    cleanup = config.getoption("disagg_cleanup_stale")
    cleanup = config.getini("disagg_cleanup_stale") if cleanup is None else cleanup
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
    with progress.current().starting(what or dc.key()):
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
