"""What a benchmark test touches: run a workload on a deployment, record it, gate it.

``disagg_bench.run(deployment, spec, benchmark="load-sweep", load="rate=2/s")`` does, in order:
the measured run (with energy where NVML is present), the >1 % failure check, the entry in the
session's results JSON, and the baseline gate — whose verdicts land in that same entry even when
the gate fails the test.
"""
from __future__ import annotations

import dataclasses

import pytest

from .baseline.pytest_plugin import CHECKS_KEY
from .measure import measured_run
from .validity import assess

# Fields of a DeploymentConfig that must not split baselines (a test-only injected delay is the
# change being detected, not a different experiment).
NOT_SUBJECT = ("proxy_extra_delay_ms", "proxy_fault", "variant")


def subject_config(deployment) -> dict:
    cfg = dataclasses.asdict(deployment.config)
    for key in NOT_SUBJECT:
        cfg.pop(key, None)
    cfg["medium_definition"] = deployment.medium.describe()
    cfg["dtype"] = deployment.dtype
    return cfg


class Bench:
    def __init__(self, request, results, baseline, meter):
        self.request = request
        self.results = results
        self.baseline = baseline
        self.meter = meter

    @property
    def energy(self) -> bool:
        return self.meter is not None

    def run(self, deployment, spec, *, benchmark: str, load: str, name: str | None = None,
            extra: dict | None = None, gate: bool = True):
        """Returns (RunResult, results entry). A run that measured the machine rather than the
        deployment (``validity.assess``) is recorded with ``valid: false`` and its reasons, and is
        kept out of the gate and the baselines: its verdict is ``invalid``."""
        run = measured_run(deployment, spec, meter=self.meter)
        entry = self.results.add_run(benchmark=benchmark, test=self.request.node.nodeid, deployment=deployment,
                                     run=run, load=load, extra=extra)
        validity = assess(run)
        entry.update(validity.to_json(), warmup=spec.warmup, client=run.client_figures(),
                     validity="yes" if validity.valid else "no: " + ", ".join(validity.reasons))
        run.check_failures()
        if gate:
            if validity.valid:
                self.gate(deployment, run, entry, name=name or f"{benchmark}[{load}]")
            else:
                self.results.set_verdicts(entry, [{"metric": "*", "verdict": "invalid",
                                                   "reason": "; ".join(validity.details)}])
        return run, entry

    def gate(self, deployment, run, entry, *, name: str) -> None:
        self.gate_figures(deployment, entry, name=name, samples=run.samples(), scalars=run.scalars(),
                          workload=run.workload.to_json())

    def gate_figures(self, deployment, entry: dict, *, name: str, samples: dict, scalars: dict, workload: dict) -> None:
        """Gate figures that are not one run's (e.g. a capacity from repeated probes); the verdicts
        land in ``entry``."""
        item = self.request.node
        before = len(item.stash.get(CHECKS_KEY, []))
        try:
            self.baseline.check(name, samples=samples, scalars=scalars, config=subject_config(deployment),
                                workload=workload, model=deployment.model.config_sha256)
        finally:
            checks = item.stash.get(CHECKS_KEY, [])[before:]
            if checks:
                self.results.set_verdicts(entry, checks[-1].verdict_dicts())


def optional_energy_meter(request):
    """The session's NVML meter, or None where there is no GPU energy to read (CPU, no NVML)."""
    try:
        return request.getfixturevalue("disagg_energy_meter")
    except pytest.skip.Exception:
        return None
