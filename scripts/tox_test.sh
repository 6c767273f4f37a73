#!/usr/bin/env bash
# `tox -e test` (what CI runs): two pytest runs at once, together tox.ini's selection.
#  - The real-deployment tests (marker disagg) in one session: the pool starts each deployment once and
#    pauses the idle ones. Served with real checkpoint weights, so that the equality property runs on
#    each session deployment instead of starting a real-weights variant of it (4 starts fewer).
#  - Beside them, in a second process, the tests without a vLLM server: they fill the cores that a
#    server start-up leaves idle. Their log follows the real run's.
# Until 2026-12-08 the two ran one after the other (1214-1344 s on CI's 2-core box). pytest-xdist's
# --dist loadgroup could have kept every deployment on one worker, but under pytest 9.2 it no longer
# groups (xdist 3.8 renames node ids through an attribute pytest 9 does not read).
#
#   bash scripts/tox_test.sh LOG_DIR [pytest arguments for both runs]
#   bash scripts/tox_test.sh --print     # the two commands, one per line (tests/test_workflows.py reads them)
set -u
logs=${1:?give a directory for the log of the tests without a server, or --print}; shift
print=no; [ "$logs" = --print ] && print=yes && logs=LOG_DIR
select="not latency and not energy and not kv_reuse and not dvfs and not micro and not repeats"
# pytest's own temporary directories for both (not under LOG_DIR: a pytester child there would find
# this checkout's pyproject.toml as its rootdir and keep its runs and baselines in the checkout).
server_free=(pytest -rfEs --durations=15 -p no:cacheprovider -m "not disagg and $select" --disagg-equality-models=none "$@")
real=(pytest -rfEs --durations=30 -m "disagg and $select" --disagg-equality-models=none --disagg-weights=checkpoint "$@")
if [ $print = yes ]; then
  printf '%q ' "${server_free[@]}"; echo
  printf '%q ' "${real[@]}"; echo
  exit 0
fi
mkdir -p "$logs"
"${server_free[@]}" > "$logs/server-free.log" 2>&1 &
free=$!
trap 'kill -TERM "$free" 2>/dev/null' EXIT      # an interrupted run leaves no second pytest behind
"${real[@]}"
real_rc=$?
wait "$free"
free_rc=$?
trap - EXIT                                      # reaped: its pid may be another process's by now
echo "--- the tests without a vLLM server, run beside the above ($logs/server-free.log) ---"
cat "$logs/server-free.log"
exit $(( real_rc ? real_rc : free_rc ))
