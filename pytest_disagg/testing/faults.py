"""Test-only mediums: a medium whose proxy breaks or slows the hand-off on purpose.

They are mediums of their own (``nixl-cpu+swap-kv-params``, ``colocated+delay12.5ms``), not fields
of the production ``DeploymentConfig``: their deployments, ids and baseline subject hashes differ
from their base's by construction, and the production config carries nothing test-only. The
fault reaches the proxy through ``Medium.proxy_args`` (``--fault``, ``--extra-delay-ms``).

In a pytest session, register one from a conftest.py and select it by name::

    def pytest_disagg_register_mediums(registry):
        registry.register(delayed(registry.get("colocated"), extra_delay_ms=5.0))   # colocated+delay5ms

(registered mediums join the default selection, so a suite-wide conftest.py would run every
benchmark on it too; the suite's own fault test and the benchmarks use a registry of their own).
Outside pytest (``benchmarks/``): ``delayed_config(registry, config, ms)`` registers the medium into
that ``MediumRegistry`` and returns the config of a deployment of it.
"""
from __future__ import annotations

import dataclasses

from ..deploy import proxy
from ..mediums import Medium, MediumContext, MediumRegistry

FAULTS = tuple(f for f in proxy.FAULTS if f != "none")


def _with_proxy_args(base: Medium, name: str, summary: str, extra: list[str]) -> Medium:
    def proxy_args(ctx: MediumContext) -> list[str]:
        return (base.proxy_args(ctx) if base.proxy_args is not None else []) + list(extra)

    return dataclasses.replace(base, name=name, summary=summary, proxy_args=proxy_args, paper_name=None)


def faulty(base: Medium, fault: str = "swap-kv-params") -> Medium:
    """``base`` with a broken hand-off: ``swap-kv-params`` hands decode the previous request's
    ``kv_transfer_params`` (only a ``kv_params`` hand-off has them)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    if base.handoff != "kv_params":
        raise ValueError(f"fault {fault!r} breaks a kv_params hand-off; medium {base.name!r} has {base.handoff!r}")
    return _with_proxy_args(base, f"{base.name}+{fault}", f"{base.summary} (test-only fault: {fault})",
                            ["--fault", fault])


def delayed(base: Medium, extra_delay_ms: float = 0.0, token_delay_ms: float = 0.0) -> Medium:
    """``base`` with every request's hand-off (before decode, when colocated) longer by
    ``extra_delay_ms`` (TTFT) and every gap between its streamed tokens longer by ``token_delay_ms``
    (TPOT): real slowdowns of known size, to measure what the gate and the A/B verdict detect."""
    delay, token = float(extra_delay_ms), float(token_delay_ms)
    if delay < 0 or token < 0 or not delay + token > 0:
        raise ValueError(f"extra_delay_ms and token_delay_ms must be >= 0, one of them > 0; got {extra_delay_ms}, "
                         f"{token_delay_ms}")
    name = (f"+delay{delay:g}ms" if delay else "") + (f"+tpot{token:g}ms" if token else "")
    what = " and ".join(([f"+{delay:g} ms TTFT"] if delay else []) + ([f"+{token:g} ms per token"] if token else []))
    args = (["--extra-delay-ms", str(delay)] if delay else []) + (["--extra-token-delay-ms", str(token)] if token else [])
    return _with_proxy_args(base, f"{base.name}{name}", f"{base.summary} (test-only {what})", args)


def register(registry: MediumRegistry, medium: Medium) -> Medium:
    """Register a test-only medium once; its name says its definition, so a second call with the
    same name keeps the first."""
    if medium.name not in registry.names():
        registry.register(medium)
    return registry.get(medium.name)


def faulty_config(registry: MediumRegistry, config, fault: str = "swap-kv-params"):
    """``config`` on ``faulty(config.medium, fault)``, registered into ``registry``."""
    medium = register(registry, faulty(registry.get(config.medium), fault))
    return dataclasses.replace(config, medium=medium.name)


def delayed_config(registry: MediumRegistry, config, extra_delay_ms: float = 0.0, token_delay_ms: float = 0.0):
    """``config`` on ``delayed(config.medium, extra_delay_ms, token_delay_ms)``, registered into ``registry``."""
    medium = register(registry, delayed(registry.get(config.medium), extra_delay_ms, token_delay_ms))
    return dataclasses.replace(config, medium=medium.name)
