"""Validate the NVML energy meter on a real GPU (read-only; never changes GPU settings).

Measures, on one GPU:
  1. the cost of each NVML query the sampler makes (wall and CPU per call);
  2. sampler overhead: CPU % of one core used by the process while the meter samples one GPU
     (process CPU time over an idle stretch, minus the same stretch without the meter); goal <= 1 %;
  3. agreement with Zeus (``zeus.monitor.ZeusMonitor``, a separate implementation reading the same
     counter) on the same >= 2 s torch bf16 matmul bursts; goal |rel diff| <= 1 %;
  4. counter energy vs integrated sampled power over the same bursts (reported, not a goal);
  5. boundaries at the counter's next update (the meter's default) against boundaries read at
     once: the spread of J over bursts of the same fixed work, each after a random idle gap, the
     two kinds alternating (reported as aligned SD / at-once SD; expected well under 1: a boundary
     read at once misses up to a counter period of the burst's end);
  6. the dry-run clock path: the study's 0.36-1.26 GHz grid validated against supported clocks.

Everything talks to NVML through the library's read-only view (``ReadOnlyNvml``), so no code path
here can set clocks, power limits or modes. Zeus is used only to read (``ZeusMonitor``).

``--boundaries-only`` runs 1 and 5 alone (no Zeus needed; ~80 s) and ends with
  boundary_sd_ratio=<r> aligned_rel_sd=<a> at_once_rel_sd=<b>

Otherwise the last line is exactly:
  sampler_cpu_pct=<x> zeus_rel_diff=<y> counter_vs_power_rel_diff=<z> boundary_sd_ratio=<r>
where y is the repeat with the largest |rel diff| (signed), z the median over repeats and r the
aligned boundaries' SD of J per fixed burst over the at-once boundaries' (Zeus reads at once, so
3 compares it with a meter whose boundaries are read at once too).
Without a GPU (or NVML, torch CUDA, zeus) it says why on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import statistics
import sys
import time


def fail(msg: str) -> int:
    print(f"energy_meter: {msg}", file=sys.stderr)
    return 2


_MUTATING = re.compile(r"Set|Reset|Clear|Create|Destroy|Modify|Remove|Discover|Freeze|Activate|Update|"
                       r"ReadWrite|Force|Register|Alloc|Free")


def forbid_setters(module) -> int:
    """Replace, in the ``pynvml`` module itself, every binding function that could change a GPU
    with one that raises, so that no library loaded here (Zeus included) can do so. Helper classes
    and read functions stay as they are."""
    from pytest_disagg.energy import nvmllib

    def refuse(name):
        def refused(*args, **kwargs):
            raise PermissionError(f"energy_meter benchmark: {name} is forbidden on this machine")
        return refused

    names = [n for n in dir(module) if inspect.isfunction(getattr(module, n))
             and not nvmllib.is_read_only_call(n) and _MUTATING.search(n)]
    for n in names:
        setattr(module, n, refuse(n))
    return len(names)


def query_costs(nvml, handle, n: int = 200) -> dict[str, dict[str, float]]:
    queries = {
        "energy": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "power": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "sm_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        "mem_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        "temperature": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        "reasons": lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
    }
    out = {}
    for name, fn in queries.items():
        fn()
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        out[name] = {"wall_ms": (time.perf_counter() - w0) / n * 1e3,
                     "cpu_ms": (time.process_time() - c0) / n * 1e3}
    return out


def cpu_over(seconds: float) -> float:
    c0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - c0


def overhead(meter, base_cpu: float, seconds: float) -> tuple[float, float]:
    """CPU % of one core the process uses while ``meter`` samples, over an idle main thread
    (minus the same stretch without a meter), and the sampler thread's own share."""
    thread0 = meter.sampler_cpu_seconds
    with_cpu = cpu_over(seconds)
    thread = meter.sampler_cpu_seconds - thread0
    return max(0.0, with_cpu - base_cpu) / seconds * 100.0, thread / seconds * 100.0


def burst(torch, a, b, seconds: float) -> float:
    """bf16 matmuls until at least ``seconds`` of device work have completed."""
    t0 = time.perf_counter()
    while True:
        for _ in range(20):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return elapsed


def _cuda_torch():
    """torch with a CUDA device, or why not (a string)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return torch if torch.cuda.is_available() else "torch sees no CUDA device"


def _operands(torch):
    """Two 8192^2 bf16 matrices on the GPU, after a 1 s warm-up (cuBLAS handles, clocks up)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16, generator=g)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16, generator=g)
    burst(torch, a, b, 1.0)
    return a, b


def _measure_boundaries(args, report: dict):
    """Step 5 into ``report["boundaries"]`` (printed): torch on CUDA and the warmed-up operands,
    returned for the steps after it as (torch, a, b); a string says why it could not run."""
    torch = _cuda_torch()
    if isinstance(torch, str):
        return torch
    a, b = _operands(torch)
    spread = boundary_spread(torch, a, b, args.gpu, args.boundary_bursts, seconds=1.5)
    report["boundaries"] = spread
    print(f"J per fixed burst ({spread['batches']} x 20 matmuls, {args.boundary_bursts} each): relative SD "
          f"aligned {spread['rel_sd']['aligned'] * 100:.3f} %, at once {spread['rel_sd']['at_once'] * 100:.3f} %")
    return torch, a, b


def fixed_work(torch, a, b, batches: int) -> None:
    """The same device work every time: ``batches`` x 20 bf16 matmuls."""
    for _ in range(batches):
        for _ in range(20):
            torch.matmul(a, b)
    torch.cuda.synchronize()


def boundary_spread(torch, a, b, gpu: int, bursts: int, seconds: float, seed: int = 0, *,
                    clock=time.perf_counter, sleep=time.sleep, meter_options: dict | None = None) -> dict:
    """J per burst of fixed work (about ``seconds`` long) under two meters, aligned and at once,
    alternating burst by burst, each burst after a random idle gap of 0-200 ms (so that its end
    falls at any phase of the counter's period). Returns each kind's J and their relative SDs.
    ``clock``, ``sleep``, ``meter_options``: for the test on the fake NVML."""
    import random

    from pytest_disagg.energy.nvml import EnergyMeter

    rng = random.Random(seed)
    t0 = clock()
    fixed_work(torch, a, b, 5)
    batches = max(1, round(seconds / ((clock() - t0) / 5)))
    joules: dict[str, list[float]] = {"aligned": [], "at_once": []}
    options = dict(meter_options or {}, sample_interval_s=None)
    with EnergyMeter([gpu], **options) as aligned, EnergyMeter([gpu], **options, align_boundaries=False) as at_once:
        for k in range(2 * bursts):
            kind, meter = ("aligned", aligned) if k % 2 == 0 else ("at_once", at_once)
            sleep(rng.uniform(0.0, 0.2))
            with meter.window(f"fixed{k}") as w:
                fixed_work(torch, a, b, batches)
            joules[kind].append(w.result.joules_by_gpu[gpu])
    rel_sd = {kind: statistics.stdev(j) / statistics.mean(j) for kind, j in joules.items()}
    return {"batches": batches, "joules": joules, "rel_sd": rel_sd,
            "sd_ratio": rel_sd["aligned"] / rel_sd["at_once"] if rel_sd["at_once"] > 0 else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", type=int, default=0, help="NVML index (also the CUDA index: one-GPU hosts)")
    ap.add_argument("--burst-seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--boundary-bursts", type=int, default=20,
                    help="fixed-work bursts per boundary kind for the aligned-vs-at-once spread (default 20)")
    ap.add_argument("--overhead-seconds", type=float, default=10.0)
    ap.add_argument("--boundaries-only", action="store_true",
                    help="only the query costs and the aligned-vs-at-once spread (5); no Zeus needed")
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args(argv)
    if args.burst_seconds < 2.0:
        return fail("--burst-seconds must be >= 2 (the comparison needs windows well over the counter period)")

    from pytest_disagg.energy import nvmllib
    from pytest_disagg.energy.clocks import ClockController
    from pytest_disagg.energy.grid import dvfs_grid, evenly_spaced
    from pytest_disagg.energy.nvml import EnergyMeter

    try:
        raw = nvmllib.load()
        forbidden = forbid_setters(raw)
        lib = nvmllib.read_only(raw)
        session = nvmllib.NvmlSession(lib, (args.gpu,))
    except (nvmllib.NvmlUnavailable, ValueError) as exc:
        return fail(f"no usable GPU: {exc}")
    report: dict = {"gpu": args.gpu, "name": session.identities[args.gpu].name}
    try:
        report["driver"] = nvmllib.as_text(lib.nvmlSystemGetDriverVersion())
        report["query_costs"] = query_costs(lib, session.handles[args.gpu])
    finally:
        session.close()
    print(f"GPU {args.gpu}: {report['name']}, driver {report['driver']}; {forbidden} NVML setters disabled")
    for q, c in report["query_costs"].items():
        print(f"  query {q:12s} {c['wall_ms']:.3f} ms wall  {c['cpu_ms']:.3f} ms CPU per call")

    if args.boundaries_only:
        setup = _measure_boundaries(args, report)
        if isinstance(setup, str):
            return fail(setup)
        spread = report["boundaries"]
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
        ratio = spread["sd_ratio"]
        print(f"boundary_sd_ratio={'nan' if ratio is None else f'{ratio:.3f}'} "
              f"aligned_rel_sd={spread['rel_sd']['aligned']:.5f} at_once_rel_sd={spread['rel_sd']['at_once']:.5f}")
        return 0

    # -- sampler overhead, before torch starts its own threads --------------------------------
    base_cpu = cpu_over(args.overhead_seconds)
    alternatives = []
    meter = EnergyMeter([args.gpu]).start()
    try:
        cpu_pct, thread_pct = overhead(meter, base_cpu, args.overhead_seconds)
        report["overhead"] = {"seconds": args.overhead_seconds, "baseline_cpu_s": base_cpu,
                              "cpu_pct_of_one_core": cpu_pct, "sampler_thread_pct": thread_pct,
                              "sample_interval_s": meter.sample_interval_s, "energy_every": meter.energy_every}
        report["meter"] = meter.info.to_json()
        print(f"sampler overhead: {cpu_pct:.3f} % of one core (thread's own CPU {thread_pct:.3f} %), "
              f"interval {meter.sample_interval_s} s, counter every {meter.energy_every} samples")
        print(f"counter period: {[p.to_json() for p in meter.info.counter_periods]}")
        if cpu_pct > 1.0:
            meter.stop()
            for interval, every in ((0.2, 5), (0.5, 2), (0.1, 10**9)):
                with EnergyMeter([args.gpu], sample_interval_s=interval, energy_every=every,
                                 measure_period=False) as alt:
                    pct, tpct = overhead(alt, base_cpu, args.overhead_seconds)
                alternatives.append({"sample_interval_s": interval, "energy_every": every,
                                     "cpu_pct_of_one_core": pct, "sampler_thread_pct": tpct})
                print(f"  alternative: interval {interval} s, counter every {every}: {pct:.3f} % "
                      f"(thread {tpct:.3f} %)")
            report["overhead"]["alternatives"] = alternatives
            meter = EnergyMeter([args.gpu]).start()

        # -- Zeus agreement and counter vs power over matmul bursts --------------------------
        setup = _measure_boundaries(args, report)
        if isinstance(setup, str):
            return fail(setup)
        torch, a, b = setup

        try:
            from zeus.monitor import ZeusMonitor
        except ImportError as exc:
            return fail(f"zeus is not importable ({exc}); carry zeus==0.16.0 as a wheel")
        meter.stop()                                     # Zeus reads at once: compare like with like
        meter = EnergyMeter([args.gpu], align_boundaries=False).start()
        idle = meter.measure_idle(2.0)
        print(f"idle: {dict(idle.watts_by_gpu)} W over {idle.seconds:.2f} s ({idle.method})")
        zeus = ZeusMonitor(gpu_indices=[args.gpu], cpu_indices=[])
        runs = []
        for i in range(args.repeats):
            name = f"burst{i}"
            torch.cuda.synchronize()
            zeus.begin_window(name)
            meter.begin(name)
            busy = burst(torch, a, b, args.burst_seconds)
            zm = zeus.end_window(name)
            w = meter.end(name)
            ours, theirs = w.joules_by_gpu[args.gpu], zm.gpu_energy[args.gpu]
            run = {"busy_s": busy, "window": w.to_json(), "zeus_j": theirs, "zeus_s": zm.time,
                   "zeus_rel_diff": (ours - theirs) / theirs,
                   "counter_vs_power_rel_diff": w.counter_vs_power_rel_diff(args.gpu),
                   "net_of_idle_j": w.minus_idle().joules_by_gpu[args.gpu]}
            runs.append(run)
            print(f"{name}: ours {ours:.1f} J over {w.seconds:.3f} s, zeus {theirs:.1f} J over {zm.time:.3f} s, "
                  f"rel diff {run['zeus_rel_diff']:+.5f}; power integral {w.power_integral_j_by_gpu[args.gpu]:.1f} J "
                  f"(counter vs power {run['counter_vs_power_rel_diff']:+.4f}); "
                  f"avg {ours / w.seconds:.0f} W; reliable={w.reliable} {list(w.notes)}")
        tl = [s for s in meter.timeline() if s.sm_mhz is not None]
        sm = [s.sm_mhz for s in tl[-int(args.burst_seconds * 10):]]
        reasons = sorted({r for s in tl for r in nvmllib.decode_throttle_reasons(s.throttle_reasons)})
        print(f"SM clock over the last burst: {min(sm)}-{max(sm)} MHz; clock-event reasons seen: {reasons}")
        report["runs"] = runs
    finally:
        meter.stop()

    # -- dry-run clock path: validate the study's grid, set nothing ---------------------------
    with ClockController("dry-run") as ctl:
        supported = ctl.supported(args.gpu).sm_for(None)
        values = evenly_spaced(360, 1260, 7)
        grid = dvfs_grid(values, values, prefill_supported=supported, decode_supported=supported)
        plans = ctl.plan({args.gpu: grid[0].prefill})
        assert isinstance(ctl._session.nvml, nvmllib.ReadOnlyNvml) and not plans[0].applied
    report["dry_run"] = {"supported_sm_range": [min(supported), max(supported)], "grid": [p.id for p in grid],
                         "plan": plans[0].to_json()}
    print(f"dry-run: {len(grid)} grid points over supported {min(supported)}-{max(supported)} MHz; "
          f"first plan {plans[0].to_json()}")

    worst = max(runs, key=lambda r: abs(r["zeus_rel_diff"]))["zeus_rel_diff"]
    cvp = statistics.median(r["counter_vs_power_rel_diff"] for r in runs)
    ratio = report["boundaries"]["sd_ratio"]
    report["summary"] = {"sampler_cpu_pct": cpu_pct, "zeus_rel_diff": worst, "counter_vs_power_rel_diff": cvp,
                         "boundary_sd_ratio": ratio}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(f"sampler_cpu_pct={cpu_pct:.3f} zeus_rel_diff={worst:.5f} counter_vs_power_rel_diff={cvp:.4f} "
          f"boundary_sd_ratio={'nan' if ratio is None else f'{ratio:.3f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
