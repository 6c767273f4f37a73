"""What a benchmark test touches: run a workload on a deployment, record it, gate it.

``disagg_bench.run(deployment, spec, benchmark="load-sweep", load="rate=2/s")`` does, in order:
the measured run (with energy where NVML is present), the entry in the session's results JSON
(with the run's fingerprint), the >1 % failure check, and the baseline gate — its result comes
back as a value, lands in that same entry, and only then fails the test on a regression.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import pytest

from .baseline import fingerprint
from .baseline.pytest_plugin import machine_fingerprint
from .measure import measured_run
from .session import existing_pool
from .validity import assess

# Fields of a DeploymentConfig that must not split baselines: ``variant`` only names a config in ids
# (test-only faults and delays are mediums of their own: pytest_disagg.testing.faults).
NOT_SUBJECT = ("variant", "eager")          # eager: entered below as the resolved serving_mode
DEFAULT_NOT_SUBJECT = {"weights": "dummy", "kv_cache_dtype": "auto"}


def subject_config(deployment) -> dict:
    cfg = dataclasses.asdict(deployment.config)
    for key in NOT_SUBJECT:
        cfg.pop(key, None)
    for key, default in DEFAULT_NOT_SUBJECT.items():   # fields added later: earlier baselines keep their hash
        if cfg.get(key) == default:
            cfg.pop(key)
    cfg["medium_definition"] = deployment.medium.describe()
    cfg["dtype"] = deployment.dtype
    mode = getattr(deployment.config, "serving_mode", None)     # None: attached, served as its owner serves it
    if mode is not None and mode() != "eager":      # every baseline before CUDA graphs was eager: hashes kept
        cfg["serving_mode"] = mode()
    return cfg


def run_fingerprint(machine: dict, deployment=None, workload: dict | None = None) -> dict:
    """The fingerprint a baseline of this run would have (``Fingerprint.to_json()``): the machine
    fields (``baseline.pytest_plugin.machine_fingerprint``: software versions, driver, CUDA, GPU/CPU,
    the ``pytest_disagg_update_fingerprint`` hook's fields; an A/B side's own for its runs) and, for
    a run, the subject hashes of the model config, the medium config and the workload. Without a
    deployment, or one without a model config: the machine alone (the results file's top level)."""
    model = getattr(deployment, "model", None)
    if model is None:
        return fingerprint.Fingerprint(machine).to_json()
    return fingerprint.collect(model=model.config_sha256, medium=subject_config(deployment), workload=workload,
                               machine=machine).to_json()


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
        """Returns (RunResult, results entry). The entry carries the run's fingerprint and, when
        gated, the verdicts (recorded before a regression fails the test). A run that measured the
        machine rather than the deployment (``validity.assess``) is recorded with ``valid: false``
        and its reasons and kept out of the gate and the baselines: its verdict is ``invalid``.
        With ``--disagg-ab`` tests get an ``ab.runner.ABBench``, whose ``run`` runs rounds instead."""
        with self.others_paused(deployment):
            run = measured_run(deployment, spec, meter=self.meter)
        workload = run.workload.to_json()
        entry = self.results.add_run(benchmark=benchmark, test=self.request.node.nodeid, deployment=deployment,
                                     run=run, load=load, extra=extra,
                                     fingerprint=run_fingerprint(machine_fingerprint(self.request.config),
                                                                 deployment, workload))
        # The name the gate judges the run under ("load-sweep[r0]"): a load label that does not move
        # when a re-probe moves the rate; trend series are named by it (export/gab.py).
        entry["gate_name"] = name or f"{benchmark}[{load}]"
        validity = assess(run)
        entry.update(validity.to_json(), warmup=spec.warmup, client=run.client_figures(),
                     validity="yes" if validity.valid else "no: " + ", ".join(validity.reasons))
        run.check_failures()
        if gate:
            if validity.valid:
                self.record_and_enforce(entry, self.gate(deployment, run, name=name or f"{benchmark}[{load}]"))
            else:
                self.results.set_verdicts(entry, [{"metric": "*", "verdict": "invalid",
                                                   "reason": "; ".join(validity.details)}])
        return run, entry

    def others_paused(self, deployment):
        """The session pool's other live CPU deployments paused for the block (``DeploymentPool.
        others_paused``: an idle nixl-cpu pair spins both cores of a small box); nothing to pause
        when the session started no pool."""
        pool = existing_pool(self.request.config)
        return pool.others_paused(deployment) if pool is not None else nullcontext([])

    def gate(self, deployment, run, *, name: str):
        """The baseline check's result (a ``CheckResult``) for one run, not yet recorded or enforced."""
        return self.gate_figures(deployment, name=name, samples=run.samples(), scalars=run.scalars(),
                                 workload=run.workload.to_json())

    def gate_figures(self, deployment, *, name: str, samples: dict, scalars: dict, workload: dict):
        """The baseline check's result for figures that are not one run's (e.g. a capacity from
        repeated probes), not yet recorded or enforced."""
        return self.baseline.evaluate(name, samples=samples, scalars=scalars, config=subject_config(deployment),
                                      workload=workload, model=deployment.model.config_sha256)

    def record_and_enforce(self, entry: dict, result) -> None:
        """Verdicts into the results entry first, then fail the test on a regression."""
        self.results.set_verdicts(entry, result.verdict_dicts())
        self.baseline.enforce(result)


def optional_energy_meter(request):
    """The session's NVML meter, or None where there is no GPU energy to read (CPU, no NVML)."""
    try:
        return request.getfixturevalue("disagg_energy_meter")
    except pytest.skip.Exception:
        return None
