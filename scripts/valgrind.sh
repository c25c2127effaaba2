#!/usr/bin/env bash
# make check-valgrind: every tests/unit/test_*.lua under valgrind's memcheck. A file passes when
# valgrind reports 0 errors and 0 bytes definitely lost (--errors-for-leak-kinds=definite makes a
# definite leak an error, --error-exitcode=99 makes any error the exit status) and the tests in
# it run to their result line (a test that fails only under valgrind, e.g. because valgrind
# does not know a syscall such as pidfd_open, is reported but does not fail this check: the
# tests' own verdict is make test's). Suppressions: tests/valgrind.supp (each one says why). Children that the tests spawn
# (./mw check, mw run...) are not traced: each test file's own process is what is checked.
# `valgrind.sh FILE...` checks only those; VALGRIND_TIMEOUT bounds each file (900 s).
set -uo pipefail
cd "$(dirname "$0")/.."
MW_BIN=${MW_BIN:-./mw}
export MW_LUA_PATH=${MW_LUA_PATH_TEST:-}
command -v valgrind >/dev/null || {
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null || exit 1
  else
    echo "valgrind: apt-get install valgrind" >&2; exit 1
  fi
}
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(tests/unit/test_*.lua)
logdir=$(mktemp -d /tmp/mw-valgrind.XXXXXX)
bad=0
for f in "${files[@]}"; do
  name=$(basename "$f" .lua)
  vlog=$logdir/$name.valgrind
  start=$(date +%s)
  # the spawned mw processes inherit nothing from valgrind; they run at full speed
  timeout -k 10 "${VALGRIND_TIMEOUT:-900}" valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite --track-fds=no --num-callers=30 \
    --suppressions=tests/valgrind.supp --log-file="$vlog" \
    "$MW_BIN" script "$f" >"$logdir/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors' "$vlog" | tail -1 | grep -oE '[0-9]+' | head -1)
  lost=$(grep -oE 'definitely lost: [0-9,]+ bytes' "$vlog" | tail -1 | grep -oE '[0-9,]+' | tr -d ,)
  result=$(grep -E '^# [0-9]+ passed' "$logdir/$name.log" | tail -1)
  if [ "$rc" -eq 0 ] || { [ "$rc" -eq 1 ] && [ -n "$result" ] && [ "${errors:-1}" = 0 ] && [ "${lost:-0}" = 0 ]; }; then
    printf 'ok   %-24s %3ss  errors %s, definitely lost %s bytes; %s\n' "$name" "$secs" "${errors:-?}" "${lost:-0}" "$result"
    grep -E '^FAIL' "$logdir/$name.log" | head -5 | sed 's/^/    (test failed under valgrind) /'
  else
    why="exit $rc"
    [ "$rc" -eq 99 ] && why="valgrind errors"
    [ "$rc" -eq 124 ] && why="timeout"
    printf 'FAIL %-24s %3ss  %s: errors %s, definitely lost %s bytes; %s\n' "$name" "$secs" "$why" "${errors:-?}" "${lost:-0}" "${result:-no result line}"
    grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|[0-9,]+ bytes in)' "$vlog" | head -5 | sed 's/^/    /'
    grep -E '^FAIL' "$logdir/$name.log" | head -5 | sed 's/^/    /'
    bad=$((bad + 1))
  fi
done
echo "valgrind logs: $logdir"
[ "$bad" -eq 0 ] && echo "valgrind: ${#files[@]} files, 0 errors, 0 bytes definitely lost" || echo "valgrind: $bad of ${#files[@]} files failed"
[ "$bad" -eq 0 ]
