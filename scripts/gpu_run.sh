#!/usr/bin/env bash
# One GPU pass of the suite, for a machine where vLLM is importable, with this project installed
# (`pip install -e .`: pytest loads the plugin through its pytest11 entry point) or not (e.g. a lent
# GPU with vLLM carried as wheels: the checkout is put on PYTHONPATH and the plugin named with -p;
# naming it when it is installed too fails with "Plugin already registered"). Writes results,
# baselines, the report and the logs under $1 (default ./gpu-out).
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
# Is the plugin already registered as an entry point (package installed)? Then do not name it again.
if python3 -c "import sys, importlib.metadata as m; sys.exit(0 if any(e.value.split(':')[0] == 'pytest_disagg.plugin' for e in m.entry_points(group='pytest11')) else 1)"; then
  plugin=()
else
  plugin=(-p pytest_disagg.plugin)
fi
echo "pytest-disagg plugin: ${plugin[*]:-installed entry point}"
python3 -m pytest "${plugin[@]}" tests/benchmarks -m "$markers" --disagg-gpus=0 \
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
