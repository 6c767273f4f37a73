#!/usr/bin/env bash
# One GPU pass of the suite, for a machine where vLLM is importable but this project is not
# installed (e.g. a lent GPU with vLLM carried as wheels). Writes results, baselines, the report
# and the logs under $1 (default ./gpu-out) and packs them into gpu-out.tar.gz.
#
#   bash scripts/gpu_run.sh OUT_DIR "MEDIUMS" "MARKERS" [extra pytest args...]
#
# Clocks are never changed here: dvfs runs in dry-run only.
set -uo pipefail
out=${1:-gpu-out}; mediums=${2:-colocated,nixl-gpu,nixl-cpu,disk}; markers=${3:-"latency or energy or kv_reuse or dvfs"}
shift 3 2>/dev/null || true
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv | tee "$out/gpu-before.csv"
python3 -m pytest -p pytest_disagg.plugin tests/benchmarks -m "$markers" --disagg-gpus=0 \
  --disagg-mediums="$mediums" --disagg-dvfs=dry-run --disagg-dvfs-grid=360:1260:3 \
  --disagg-json="$out/results.json" --disagg-logs="$out/logs" --disagg-baselines-dir="$out/baselines" \
  --disagg-refresh-baselines -rs -p no:cacheprovider "$@" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv | tee "$out/gpu-after.csv"
if [ -f "$out/results.json" ]; then
  python3 -m pytest_disagg.cli report "$out/results.json" --out "$out/report" 2>&1 | tail -3
fi
echo "pytest exit $rc"
exit "$rc"
