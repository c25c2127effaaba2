#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets in tests/fuzz/ with Debian's clang and runs each for
# FUZZ_SECONDS (30) from its committed seed corpus (tests/fuzz/corpus/<target>/, read only: new
# inputs go to build/fuzz/work/<target>/). A crash leaves build/fuzz/crash-<target>-* and makes
# this exit 1.  `fuzz.sh TARGET...` runs only those; FUZZ_JOBS runs that many at once (1).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
ALL=(lines ignore frames duration stack)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

have_fuzzer() {
  command -v clang >/dev/null || return 1
  local d
  d=$(mktemp -d)
  printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$d/t.c"
  clang -fsanitize=fuzzer "$d/t.c" -o "$d/t" >/dev/null 2>&1
  local rc=$?
  rm -rf "$d"
  return $rc
}

if ! have_fuzzer; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "fuzz: installing clang and libclang-rt-14-dev (libFuzzer)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq clang libclang-rt-14-dev liblua5.4-dev >/dev/null || exit 1
  fi
  have_fuzzer || { echo "fuzz: clang with -fsanitize=fuzzer is needed: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }
fi

LUA_CFLAGS=$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUA_LIBS=$(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
UV_CFLAGS=$(pkg-config --cflags libuv 2>/dev/null)
UV_LIBS=$(pkg-config --libs libuv 2>/dev/null || echo -luv)
# What the Lua targets link of the core: mw.core with its real budget (core/task.c) and
# what it needs; not main.c (the harness is the host) nor the I/O modules.
CORE=(core/task.c core/class.c core/cond.c core/waiter.c core/pattern.c)
FLAGS=(-g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Icore $LUA_CFLAGS $UV_CFLAGS)
OUT=build/fuzz
mkdir -p "$OUT/work"

build() {
  local t=$1
  case $t in
    lines)  clang "${FLAGS[@]}" -o "$OUT/$t" tests/fuzz/fuzz_lines.c core/lines.c core/class.c $LUA_LIBS $UV_LIBS ;;
    ignore) clang "${FLAGS[@]}" -o "$OUT/$t" tests/fuzz/fuzz_ignore.c core/tar.c core/class.c $LUA_LIBS $UV_LIBS ;;
    # The Lua targets leave out ASan: it slows the uninstrumented liblua's every allocation
    # about tenfold, and what they look for are Lua-level failures, not C memory errors.
    frames|duration|stack)
            clang "${FLAGS[@]/address,/}" -DDRIVER="\"$t\"" -DROOT="\"$PWD\"" -o "$OUT/$t" tests/fuzz/fuzz_lua.c "${CORE[@]}" $LUA_LIBS $UV_LIBS -lm ;;
    *) echo "fuzz: unknown target $t (have: ${ALL[*]})" >&2; return 1 ;;
  esac
}

failed=0
for t in "${targets[@]}"; do
  build "$t" || { echo "fuzz: cannot build $t" >&2; failed=1; continue; }
  mkdir -p "$OUT/work/$t"
  seeds=tests/fuzz/corpus/$t
  log=$OUT/$t.log
  # -timeout: one input may take at most 10 s; -rss_limit_mb guards the host
  "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" "$OUT/work/$t" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
  if [ $rc -ne 0 ]; then
    echo "FAIL fuzz $t: exit $rc; see $log and $OUT/crash-$t-*"
    grep -E 'ERROR|invariant|escaped|escape|SUMMARY|Test unit written' "$log" | head -8 | sed 's/^/    /'
    failed=1
  else
    printf 'ok   fuzz %-9s %ss, %s runs, %s\n' "$t" "$SECONDS_EACH" "${runs:-?}" "${cov:-?}"
  fi
done
exit $failed
