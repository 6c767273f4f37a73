"""The A/B workload per device: one table, read by ``tests/benchmarks/test_ab_latency.py`` (what
users run), ``benchmarks/ab_power.py`` and ``benchmarks/gate_power.py`` (which measure how often
a verdict on it is wrong): power and false-alarm rates describe only the workload they were
measured on.

Never probed: the workload must not move with what it measures. Each shape is chosen so that its
figures are decided by the device under test, not by the host's moment:

- **cpu** — closed loop, one request at a time, 512-token prompts, 8 output tokens, 48 requests,
  on ``small-llama-cpu`` (4 layers x 512: TTFT ~97 ms of prefill compute). Run-to-run CV of median
  TTFT over 6 runs of one colocated deployment on the 2-core box: Poisson 192/32 on tiny-llama-cpu
  12-14 % (TTFT ~15 ms is the host's scheduling jitter), closed loop 512/8 on tiny-llama-cpu 27 %,
  on small-llama-cpu 3.3 %.
- **cuda** — the seed study's request shape (16,384-token prompts, 256 output tokens), four
  requests sent at once: TTFT is four long prefills, TPOT a decode batch over 16k-token contexts
  (the KV reads and the weights dominate a step), energy per token a window of seconds (NVML's
  counter updates every ~100 ms). On a lent H100 (llama-3.2-3b-shape, eager servers) the study's
  8-request batch moved TTFT 0.5 % (robust SD) run to run, J/token 1.5 %, TPOT 12.9 % (eager: the
  host's step time; served with CUDA graphs, as the suite now serves GPUs, the GPU's).
- **cuda-host-overhead** — closed loop 2000/8 on a GPU: kept only as a labelled host-overhead
  figure (TTFT moved 12.5-16.7 % run to run on the H100: Python and kernel launches, not the GPU).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..load import WorkloadSpec, concurrency, fixed

#: the fixture ab_power (and the README's CPU A/B) runs on
CPU_MODEL = "small-llama-cpu"
#: the GPU fixture whose prefills and decode steps are GPU work (the study's model shape)
GPU_MODEL = "llama-3.2-3b-shape"


@dataclass(frozen=True)
class Shape:
    """One A/B workload: requests of ``prompt`` + ``output`` tokens, ``concurrency`` in flight."""

    name: str
    prompt: int
    output: int
    requests: int
    concurrency: int
    warmup: int
    metrics: tuple[str, ...]          # the figures this shape is meant to decide (the others are reported)
    purpose: str

    @property
    def max_model_len(self) -> int:
        """The context the deployments need: prompt and output must fit (vLLM refuses otherwise)."""
        return max(2048, self.prompt + self.output)

    def spec(self, *, seed: int = 5, requests: int | None = None) -> WorkloadSpec:
        return WorkloadSpec(arrival=concurrency(self.concurrency), num_requests=requests or self.requests,
                            prompt=fixed(self.prompt), output=fixed(self.output), warmup=self.warmup, seed=seed,
                            max_wall_s=300.0, name=f"ab-{self.name}")


SHAPES = {
    "cpu": Shape("cpu-latency", prompt=512, output=8, requests=48, concurrency=1, warmup=2,
                 metrics=("ttft_ms", "tpot_ms", "e2el_ms"),
                 purpose="latency on the CPU box: one request at a time, prefill compute dominates TTFT"),
    "cuda": Shape("gpu-study", prompt=16_384, output=256, requests=4, concurrency=4, warmup=1,
                  metrics=("ttft_ms", "tpot_ms", "energy_j_per_token"),
                  purpose="the study's requests on a GPU: long prefills (TTFT), a decode batch over long "
                          "contexts (TPOT), seconds of GPU work (J/token)"),
    "cuda-host-overhead": Shape("gpu-host-overhead", prompt=2000, output=8, requests=48, concurrency=1, warmup=2,
                                metrics=("ttft_ms",),
                                purpose="host overhead on a GPU node: short requests one at a time (the "
                                        "host's Python and launches, not the GPU)"),
}


def shape_for(device: str, kind: str = "") -> Shape:
    """The device's A/B shape (``kind``: e.g. ``host-overhead`` for the labelled GPU figure)."""
    key = ("cpu" if device == "cpu" else "cuda") + (f"-{kind}" if kind else "")
    try:
        return SHAPES[key]
    except KeyError:
        raise ValueError(f"no A/B workload shape {key!r}; known: {', '.join(SHAPES)}") from None


def ab_spec(device: str, medium: str = "", *, seed: int = 5, requests: int | None = None) -> WorkloadSpec:
    """The device's A/B workload. ``medium`` is accepted for a per-medium load later; every medium
    runs the same workload now, so that a disaggregated medium's verdict reads like colocated's."""
    return shape_for(device).spec(seed=seed, requests=requests)
