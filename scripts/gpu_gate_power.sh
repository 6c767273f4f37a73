#!/usr/bin/env bash
# Issue 15 on a lent GPU (vLLM carried as wheels, see shared/device/README.md): real samples for
# both gates' false-alarm rate and +5 % power, collected only (the statistics run on any machine
# afterwards: `python benchmarks/ab_power.py --samples ...`, `python benchmarks/gate_power.py --samples ...`).
#
#   bash scripts/gpu_gate_power.sh ab|gate OUT_DIR [MODEL]
#
# ab:   one ab_power session on colocated: A1, A2 and B (+5 % of A1's median TTFT by the proxy) kept
#       up on the one GPU (a quarter of its memory each), rounds rotated (--disagg-ab-fresh=no's design;
#       fresh starts cost ~1 min each there). Rounds are written as they finish.
# gate: gate_power's collection on colocated: every run on a freshly started deployment, normal and
#       proxy-delayed runs interleaved.
# MODEL defaults to llama-3.2-3b-shape (28 layers x 3072, dummy weights): its 2000-token prefill is
# GPU work, where tiny-llama-gpu's TTFT was mostly host overhead (round SD 17-24 % on an H200).
# Clocks are never changed.
set -uo pipefail
what=${1:?ab or gate}; out=${2:-gpu-gates}; model=${3:-llama-3.2-3b-shape}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,power.limit --format=csv | tee "$out/gpu-$what.csv"
case "$what" in
  ab)   python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import ab_power as a; from pathlib import Path
a.collect(Path('$out/ab-power-samples-gpu.json'), ['colocated'], {'colocated': {'sessions': 1, 'rounds': ${ROUNDS:-12}}},
          device='cuda', gpus=(0,), model='$model')" 2>&1 | grep -v " INFO \|WARNING" | tail -n 60 ;;
  gate) python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import gate_power as g; from pathlib import Path
g.collect(Path('$out/gate-power-samples-gpu.json'), ['colocated'], ${RUNS:-5}, ${DELAYED:-2}, ${REQUESTS:-200},
          max_load=64.0, device='cuda', model='$model', gpus=(0,), rates={'colocated': ${RATE:-8}})" 2>&1 \
          | grep -v " INFO \|WARNING" | tail -n 60 ;;
  *) echo "first argument: ab or gate" >&2; exit 2 ;;
esac
