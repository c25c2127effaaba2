#!/usr/bin/env bash
# make soak: the long runs of the fault tests against the real engine: 100 kill -9 trials
# (SOAK_TRIALS), a 10-minute crash loop with mw's memory and fds watched
# (SOAK_CRASHLOOP_SECONDS), then the fault-injection and engine-away cases again under
# SOAK_ROUNDS (3) more seeds. Ends with "N passed, N failed, N skipped" like make test.
set -uo pipefail
cd "$(dirname "$0")/.."
MW_BIN=${MW_BIN:-./mw}
export MW_LUA_PATH=${MW_LUA_PATH_TEST:-}
state=$(scripts/engine.sh up) || { echo "soak: no Docker engine" >&2; exit 1; }
[ "$state" = started ] && trap 'scripts/engine.sh down' EXIT
make -s --no-print-directory build/mw-fault-proxy || exit 1
logdir=$(mktemp -d /tmp/mw-soak.XXXXXX)
passed=0 failed=0 skipped=0
run() {   # name, then env assignments for the test file
  local name=$1; shift
  local log=$logdir/$name.log start=$SECONDS
  env "$@" timeout -k 10 7200 "$MW_BIN" script tests/engine/test_faults.lua >"$log" 2>&1
  local rc=$?
  local line
  line=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  grep -E '^#   ' "$log" | sed "s/^#  /$name:/"
  if [ -z "$line" ]; then echo "FAIL $name: no result line (exit $rc)"; failed=$((failed + 1)); return; fi
  read -r p f s <<<"$(echo "$line" | sed -E 's/^# ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  grep -E '^FAIL' "$log" | head -5 | sed 's/^/    /'
  printf '%-24s %3d passed %3d failed %3d skipped  %ss\n' "$name" "$p" "$f" "$s" "$((SECONDS - start))"
}
seed=${SOAK_SEED:-$(( $(date +%s) % 1000003 ))}
echo "soak: seed $seed, logs in $logdir"
run kill-trials MW_FAULT_SEED="$seed" MW_FAULT_TRIALS="${SOAK_TRIALS:-100}" T_ONLY="kill -9"
run crash-loop MW_FAULT_SEED="$seed" MW_CRASHLOOP_SECONDS="${SOAK_CRASHLOOP_SECONDS:-600}" T_ONLY="crash-looping"
for i in $(seq 1 "${SOAK_ROUNDS:-3}"); do
  run "inject-$i" MW_FAULT_SEED=$((seed + i)) T_ONLY="errors, resets"
  run "away-$i" MW_FAULT_SEED=$((seed + i)) T_ONLY="engine goes away"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
