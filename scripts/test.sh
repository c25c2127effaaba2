#!/usr/bin/env bash
# make test: every test file, then one line "N passed, N failed, N skipped".
# `test.sh unit` runs only the tests that need no engine (make check-asan uses it).
set -uo pipefail
cd "$(dirname "$0")/.."
MW_BIN=${MW_BIN:-./mw}
export MW_LUA_PATH=${MW_LUA_PATH_TEST:-}
which=${1:-all}
files=(tests/unit/test_*.lua)
engine_state=none
if [ "$which" = all ]; then
  if engine_state=$(scripts/engine.sh up); then
    [ "$engine_state" = started ] && echo "test: no Docker engine answered; started dockerd for the tests (stopped at the end)"
    trap '[ "$engine_state" = started ] && scripts/engine.sh down && echo "test: stopped the dockerd it started"' EXIT
    files+=(tests/engine/test_*.lua)
  else
    echo "test: no Docker engine; engine tests are skipped"
    engine_state=none
  fi
fi
passed=0 failed=0 skipped=0
logdir=$(mktemp -d /tmp/mw-test.XXXXXX)
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .lua)
  start=$(date +%s.%N)
  timeout -k 10 900 "$MW_BIN" script "$f" >"$logdir/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  line=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$logdir/$name.log" | tail -1)
  if [ -z "$line" ]; then
    echo "FAIL $f: no result line (exit $rc)"; tail -20 "$logdir/$name.log" | sed 's/^/    /'
    failed=$((failed + 1)); continue
  fi
  read -r p f2 s <<<"$(echo "$line" | sed -E 's/^# ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')"
  passed=$((passed + p)); failed=$((failed + f2)); skipped=$((skipped + s))
  if [ "$f2" -gt 0 ] || [ "$rc" -ne 0 ]; then
    grep -E '^(FAIL|mw:)' "$logdir/$name.log" | head -20 | sed 's/^/    /'
    [ "$f2" -eq 0 ] && { echo "    (exit $rc)"; failed=$((failed + 1)); }
  fi
  printf '%-28s %3d passed %3d failed %3d skipped  %ss\n' "$name" "$p" "$f2" "$s" "${secs:0:5}"
done
echo "logs: $logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
