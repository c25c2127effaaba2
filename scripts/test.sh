#!/usr/bin/env bash
# make test: luacheck, every test file, then one line "N passed, N failed, N skipped".
# It fails when the engine tests cannot run: a green `make test` means they ran.
# `test.sh unit` runs only the tests that need no engine (`make unit`, `make check-asan`):
# asking for that is the only way to run without an engine.
# One file: `./mw script tests/unit/test_stack.lua`; one case: T_ONLY='part of its name'.
set -uo pipefail
cd "$(dirname "$0")/.."
MW_BIN=${MW_BIN:-./mw}
export MW_LUA_PATH=${MW_LUA_PATH_TEST:-}
which=${1:-all}
files=(tests/unit/test_*.lua)
passed=0 failed=0 skipped=0
engine_state=none
case "$which" in
  all)
    if ! engine_state=$(scripts/engine.sh up 2>/tmp/mw-test-engine.err); then
      echo "test: FAILED: the engine tests cannot run: $(tail -1 /tmp/mw-test-engine.err)" \
           "(\`make unit\` runs the unit tests alone)" >&2
      echo "0 passed, 1 failed, 0 skipped"
      exit 1
    fi
    [ "$engine_state" = started ] && echo "test: no Docker engine answered; started dockerd for the tests (stopped at the end)"
    trap '[ "$engine_state" = started ] && scripts/engine.sh down && echo "test: stopped the dockerd it started"' EXIT
    files+=(tests/engine/test_*.lua)
    # engine test files read this to know the engine is theirs to restart
    export MW_TEST_ENGINE=$engine_state
    if command -v luacheck >/dev/null; then
      if luacheck --no-color -q lua stdlib tests examples >/tmp/mw-luacheck.log 2>&1; then
        echo "luacheck                     clean"
      else
        echo "FAIL luacheck:"; grep -E ':[0-9]+:[0-9]+:' /tmp/mw-luacheck.log | head -20 | sed 's/^/    /'
        failed=$((failed + 1))
      fi
    else
      echo "FAIL luacheck is not installed (make deps)"; failed=$((failed + 1))
    fi
    ;;
  unit) ;;
  *) echo "usage: test.sh [all|unit]" >&2; exit 2 ;;
esac
logdir=$(mktemp -d /tmp/mw-test.XXXXXX)
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .lua)
  log="$logdir/$(basename "$(dirname "$f")")-$name.log"
  start=$(date +%s.%N)
  timeout -k 10 900 "$MW_BIN" script "$f" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  line=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "FAIL $f: no result line (exit $rc)"; tail -20 "$log" | sed 's/^/    /'
    failed=$((failed + 1)); continue
  fi
  read -r p f2 s <<<"$(echo "$line" | sed -E 's/^# ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')"
  passed=$((passed + p)); failed=$((failed + f2)); skipped=$((skipped + s))
  if [ "$f2" -gt 0 ] || [ "$rc" -ne 0 ]; then
    grep -E '^(FAIL|mw:)' "$log" | head -20 | sed 's/^/    /'
    [ "$f2" -eq 0 ] && { echo "    (exit $rc)"; failed=$((failed + 1)); }
  fi
  grep -E '^skip ' "$log" | sed 's/^/    /'
  printf '%-28s %3d passed %3d failed %3d skipped  %ss\n' "$name" "$p" "$f2" "$s" "${secs:0:5}"
done
echo "logs: $logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
