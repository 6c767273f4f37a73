#!/usr/bin/env bash
# Issue 27 on a lent GPU (vLLM carried as wheels, see shared/device/README.md), servers served as
# production serves them (CUDA graphs and compilation: the suite's GPU default), clocks never touched.
#
#   bash scripts/gpu_ab_verdicts.sh start OUT_DIR   # detach the whole job, then poll as `wait` does
#   bash scripts/gpu_ab_verdicts.sh wait OUT_DIR    # poll up to WAIT_S, copy what exists to OUT_DIR
#
# The job, in order, each step's files written as it goes under $WORK (default /root/ab27):
#  0. the energy meter's boundaries (benchmarks/energy_meter.py --boundaries-only, ~80 s): J per fixed
#     burst with boundaries at counter updates against boundaries read at once; its line goes to status.txt.
#  1. ab_power's collection on the GPU shape (ab/workload.py SHAPES["cuda"]: 4 x 16,384 in / 256 out at
#     once, llama-3.2-3b-shape): A1, A2 and B (A2's servers behind a proxy planting +5 % TTFT and
#     +5 % TPOT), ROUNDS rounds (2x the budget, so that resampling gives rates), J/token from NVML.
#  2. the eager-vs-graphs A/B: side B = --enforce-eager, both sides kept up (--disagg-ab-fresh=no).
#  3. an A/A (side B = AB_SIDE=B in the servers' environment) that must not call a change.
# The statistics are CPU work (scipy, minutes): run them here afterwards, `ab_power.py --samples FILE`.
# Why detached: one device call has 10 minutes and the job takes longer; the machine stays warm
# while calls follow each other, and the job's files are fetched by the next call. Make the next
# `wait` call at once: a lent machine goes back after ~30 s idle, and the job with it (2026-12-07:
# 11 rounds of step 1 came back, steps 2 and 3 were lost that way). Budget: the first start with
# compilation took 165-265 s on an H100, an eager start 47 s, each run of the GPU shape 2.4 s, a
# round of step 1 ~18 s (24 rounds: ~13 min with the starts), step 2 351 s in all (10 rounds).
# Done so far: step 2 (2026-12-07, docs/ab/gpu-h100-eager-vs-graphs/); next: STEPS=energy,power,aa.
set -uo pipefail
what=${1:?start or wait}; out=${2:-gpu-ab27}
work=${WORK:-/root/ab27}
mkdir -p "$out"

fetch() {      # at most 8 files come back from a device call
  for f in ab-power-samples.json ab_power.log ab-eager.json ab-eager.log ab-aa.json ab-aa.log gpu.csv status.txt; do
    [ -f "$work/$f" ] && cp "$work/$f" "$out/"
  done
  tail -n 5 "$work/status.txt" 2>/dev/null
}

poll() {
  local until=$(( $(date +%s) + ${WAIT_S:-540} ))
  while [ "$(date +%s)" -lt "$until" ] && ! grep -q '^done' "$work/status.txt" 2>/dev/null; do sleep 10; done
  tail -n 4 "$work/ab_power.log" 2>/dev/null; tail -n 3 "$work/ab-eager.log" "$work/ab-aa.log" 2>/dev/null
  fetch
}

job() {
  cd "$work/repo" || exit 1
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv > "$work/gpu.csv"
  steps=${STEPS:-energy,power,aa}   # e.g. STEPS=eager; energy,power,aa by default (eager ran)
  [[ $steps == *energy* ]] && python3 benchmarks/energy_meter.py --boundaries-only 2>&1 | tail -n 2 >> "$work/status.txt"
  [[ $steps == *power* ]] && echo "ab_power start $(date -u +%T)" >> "$work/status.txt" && python3 benchmarks/ab_power.py --device cuda --gpus 0 --mediums colocated --rounds "${ROUNDS:-24}" \
    --deadline-s "${DEADLINE_S:-900}" --collect-to "$work/ab-power-samples.json" --no-statistics 2>&1 \
    | grep --line-buffered -v " INFO \|WARNING\|DEBUG" > "$work/ab_power.log" \
    && echo "ab_power done $(date -u +%T)" >> "$work/status.txt"
  common=(-p pytest_disagg.plugin tests/benchmarks/test_ab_latency.py -m latency --disagg-gpus=0
          --disagg-mediums=colocated --disagg-prefix-caching=off --disagg-model=llama-3.2-3b-shape
          --disagg-ab-fresh=no --disagg-ab-max-rounds=${AB_ROUNDS:-12} --disagg-baseline=off -p no:cacheprovider -rs)
  if [[ $steps == *eager* ]]; then
    python3 -m pytest "${common[@]}" --disagg-ab=same --disagg-ab-server-args='--enforce-eager' \
      --disagg-json="$work/ab-eager.json" > "$work/ab-eager.log" 2>&1
    echo "ab eager-vs-graphs exit $? $(date -u +%T)" >> "$work/status.txt"
  fi
  if [[ $steps == *aa* ]]; then
    python3 -m pytest "${common[@]}" --disagg-ab=same --disagg-ab-env=AB_SIDE=B \
      --disagg-json="$work/ab-aa.json" > "$work/ab-aa.log" 2>&1
    echo "ab A/A exit $? $(date -u +%T)" >> "$work/status.txt"
  fi
  nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv >> "$work/gpu.csv"
  echo "done $(date -u +%T)" >> "$work/status.txt"
}

case "$what" in
  start)
    rm -rf "$work"; mkdir -p "$work/repo"
    cp -r pytest_disagg benchmarks tests fixtures conftest.py pyproject.toml "$work/repo/"
    export -f job; export work
    setsid nohup bash -c job > "$work/job.log" 2>&1 < /dev/null &
    poll ;;
  wait) poll ;;
  *) echo "first argument: start or wait" >&2; exit 2 ;;
esac
