"""One measured run: a workload against a deployment, inside energy windows where they exist.

The glue between the load generator and the energy library, kept out of both: the runner knows
nothing about energy and the meter nothing about requests. Warm-up requests run before the
energy window opens, so that joules are divided only by the tokens of the measured requests.
"""
from __future__ import annotations

import dataclasses
import time

from .energy.attribution import attribute, gpus_by_role
from .energy.rapl import RaplMeter
from .load import RunResult, WorkloadSpec, run_workload


def _host_meter():
    """A RAPL meter for CPU package and DRAM; it reports 'unavailable' where powercap is absent."""
    return RaplMeter(("package", "dram"), poll_interval_s=None)


def _bound(meter, deployment):
    """The meter and the prefill/decode GPU keys of its windows: a local meter as it is; a
    multi-node one (``energy/nodes.py``, it has ``for_deployment``) bound to this deployment's nodes."""
    bind = getattr(meter, "for_deployment", None)
    if bind is None:
        return meter, gpus_by_role(deployment.servers)
    bound = bind(deployment)
    return bound, bound.gpus_by_role()


def measured_run(deployment, spec: WorkloadSpec, *, meter=None, host_energy: bool = True,
                 window_name: str | None = None, progress: bool | None = None) -> RunResult:
    """Run ``spec``; with an NVML ``meter``, the result carries the energy record
    (``Attribution.record()``) in ``energy``. Returns a new :class:`RunResult`; nothing is
    edited after the fact."""
    if meter is None:
        return run_workload(deployment, spec, progress=progress)
    if spec.warmup:
        run_workload(deployment, dataclasses.replace(spec, num_requests=spec.warmup, warmup=0), progress=False)
    measured_spec = dataclasses.replace(spec, warmup=0)
    meter, roles = _bound(meter, deployment)
    name = window_name or f"{deployment.key}:{spec.spec_hash()[:8]}:{time.monotonic_ns()}"
    rapl = _host_meter() if host_energy else None
    if rapl is not None:
        rapl.begin(name)
    with meter.window(name) as handle:
        run = run_workload(deployment, measured_spec, progress=progress)
    host = rapl.end(name) if rapl is not None else ()
    ok = [r for r in run.measured if r.ok]
    attribution = attribute(
        handle.result, prefill_gpus=roles["prefill"], decode_gpus=roles["decode"],
        prompt_tokens=sum(r.prompt_tokens for r in ok), output_tokens=sum(r.output_tokens for r in ok),
        requests=len(ok), host=host,
    )
    # The spec the caller asked for (warm-up included: the baseline keys on it), and the energy.
    return dataclasses.replace(run, workload=spec, energy=attribution.record(), _summary=None)
