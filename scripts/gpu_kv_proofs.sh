#!/usr/bin/env bash
# Issue 20 on a lent GPU (vLLM 0.26.0 carried as wheels, see shared/device/README.md): the proof
# that KV moved, for an MLA model and for an fp8 KV cache, with vLLM's own bytes/token beside the
# bytes NIXL moved; and the greedy-equality property on real tiny checkpoints.
#
#   bash scripts/gpu_kv_proofs.sh OUT_DIR
#
# 1. tests/test_kvspec.py: vLLM (here: CUDA platform) sizes every fixture config (MLA latent
#    3 x (512 + 64) x 2 = 3456 B/token; fp8 halves a bf16 cache); no server.
# 2. tiny-deepseek-v2-lite-gpu (MLA, bf16) on nixl-gpu: self-check + KV-bytes + equality properties.
# 3. tiny-llama-gpu with --kv-cache-dtype fp8 on nixl-gpu: the same (expected 32768 B/token).
# Clocks are never changed. Writes logs and pytest output under OUT_DIR; the last lines print the
# measured and the expected bytes per token of each deployment.
set -uo pipefail
out=${1:-gpu-kv}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
rc=0
python3 -m pytest -p pytest_disagg.plugin tests/test_kvspec.py tests/test_checkpoints.py -q -rs -s -p no:cacheprovider \
  2>&1 | tee "$out/kvspec.log" || rc=1
run() {
  local name=$1; shift
  python3 -m pytest -p pytest_disagg.plugin tests/test_deployments.py tests/test_properties.py \
    -k "kv_moved or kv_bytes_moved or greedy_output_equals" --disagg-gpus=0 --disagg-mediums=nixl-gpu \
    --disagg-prefix-caching=off --disagg-equality-models=none --disagg-logs="$out/logs-$name" \
    --disagg-server-timeout=900 -rs -s -p no:cacheprovider "$@" 2>&1 | tee "$out/$name.log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
}
run mla --disagg-model=tiny-deepseek-v2-lite-gpu
run fp8 --disagg-model=tiny-llama-gpu --disagg-kv-cache-dtype=fp8
echo "--- measured vs expected bytes per token ---"
grep -ho '"expected_kv_bytes_per_token": [0-9.]*\|"measured_kv_bytes_per_token": [0-9.]*\|"kv_bytes_source": "[^"]*"\|"formula_kv_bytes_per_token": [0-9]*' \
  "$out/mla.log" "$out/fp8.log" | paste - - - - 
grep -h "B/token by vLLM" "$out/mla.log" "$out/fp8.log"
echo "exit $rc"
exit "$rc"
