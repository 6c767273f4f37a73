"""What the suite does differently on a CPU box and on a GPU node, decided here and nowhere else.

Why one module: these choices were ``device == "cpu"`` tests spread over the pool, the A/B
runner and the benchmarks, and each was justified by a measurement of one device only. A reader
(and a reviewer of a new device) finds every such policy, and the measurement behind it, here.

- **eager**: vLLM serves without CUDA graphs or torch.compile only where it must. On a GPU, eager
  mode makes every decode step hundreds of Python-launched kernels, so TPOT and the J/token that
  follows it measure the host, not the GPU (on a lent H100: TPOT's run-to-run robust SD 12.9 %
  eager, where a long prefill's TTFT moved 0.5 %); and a regression in vLLM's graph or compile
  path would be invisible. Production serves with graphs, so the suite does too. vLLM's CPU
  build is served eager, as every CPU result so far was (and as CI's start-up budget wants).
- **pause_idle**: idle CPU deployments are SIGSTOPped (an idle nixl-cpu pair polls both cores of
  the 2-core box: ``deploy/pool.py``'s ``others_paused``). On a GPU node the host has 16+ cores
  and an idle engine loop costs the measured GPU nothing measurable (A2/A1 moved -0.1..-0.7 % in
  TTFT with both alive, 3 pairs on an H100), so GPU deployments are left running: stopping a
  process that holds a CUDA context mid-flight is a risk with nothing to gain.
- **ab_fresh**: what ``--disagg-ab-fresh=auto`` means. On the CPU box each start lands 4-8 %
  (SD) off the last one, a constant bias if sides stay up, so A/B needs fresh starts per round
  there; on the H100 no start-to-start offset above ~0.5 % was seen, and a start costs ~1 min,
  so sides stay up.
"""
from __future__ import annotations

from dataclasses import dataclass

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DevicePolicy:
    device: str
    eager: bool              # serve with --enforce-eager unless the user says otherwise
    pause_idle: bool         # stop idle deployments (SIGSTOP) between and during measurements
    ab_fresh: bool           # --disagg-ab-fresh=auto: fresh deployments every round

    def serving_mode(self, eager: bool | None) -> str:
        """The mode a deployment is served in: the user's choice, else this device's default."""
        return "eager" if (self.eager if eager is None else eager) else "cuda-graphs"


POLICIES = {
    "cpu": DevicePolicy("cpu", eager=True, pause_idle=True, ab_fresh=True),
    "cuda": DevicePolicy("cuda", eager=False, pause_idle=False, ab_fresh=False),
}


def policy(device: str) -> DevicePolicy:
    try:
        return POLICIES[device]
    except KeyError:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}") from None
