#!/usr/bin/env bash
# make bench: builds mw, makes sure Debian's docker-compose is there (benchmark 1's compose
# column), then runs every benchmark against the engine, each bounded in time. Figures are
# printed and appended to tests/bench/RESULTS.md under a header for this run.
#   BENCH_ONLY="cold reload"   run only these (cold recovery standby footprint reload adopt hbscale takeover)
#   BENCH_RESULTS=-            print only; BENCH_RESULTS=FILE append elsewhere
#   BENCH_TIMEOUT=SECS         per benchmark (default 1500)
#   per benchmark: BENCH_COLD_TRIALS (3), BENCH_COLD_TRIALS_LARGE (2, N >= 30 and the chain), BENCH_COLD_SIZES (1,8,30,chain), BENCH_CHAIN_DEPTH (10),
#   BENCH_RECOVERY_TRIALS (20), BENCH_RECOVERY_ARP (on; off: mw without its address announcement), BENCH_RECOVERY_DOCKER_NET (user; bridge: Docker's side on the default bridge), BENCH_RECOVERY_FIELDS (more fields for mw's components, e.g. "hold_network = false"), BENCH_PAUSE_TRIALS (20), BENCH_PAUSE_SLOW_TRIALS (5), BENCH_STANDBY_TRIALS (20),
#   BENCH_FOOT_SIZES (1,10,50,100), BENCH_FOOT_SECS (60), BENCH_FOOT_PATHS (published,netns), BENCH_RELOAD_EDITS (50),
#   BENCH_ADOPT_COMPONENTS (50), BENCH_ADOPT_TRIALS (5), BENCH_HB_N (1000), BENCH_HB_SECS (30),
#   BENCH_TAKEOVER_TRIALS (20), BENCH_TAKEOVER_TTL (5; etcd coordination, needs etcd: make deps)
set -uo pipefail
cd "$(dirname "$0")/../.."

make --no-print-directory mw >/dev/null || { echo "bench: building mw failed" >&2; exit 1; }
# a private copy: other work may rebuild ./mw while the benchmarks run
bindir=$(mktemp -d /tmp/mw-bench.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
cp mw "$bindir/mw"
export MW_BIN=${MW_BIN:-$bindir/mw}

if ! docker-compose version >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bench: installing Debian's docker-compose for benchmark 1" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker-compose >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq docker-compose >/dev/null 2>&1; } ||
      echo "bench: could not install docker-compose; benchmark 1 skips its column" >&2
  else
    echo "bench: docker-compose is missing (apt-get install -y docker-compose); benchmark 1 skips its column" >&2
  fi
fi

# benchmark 7 holds a thousand listeners and as many connections
ulimit -n 65536 2>/dev/null || true

export BENCH_RESULTS=${BENCH_RESULTS:-tests/bench/RESULTS.md}
benches=${BENCH_ONLY:-cold recovery standby footprint reload adopt hbscale takeover}
if [ "$BENCH_RESULTS" != "-" ]; then
  {
    printf '\n## Run of %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'mw %s (%s), `make bench`' "$("$MW_BIN" version 2>/dev/null | head -1 | sed 's/^mw //')" \
      "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
    env | grep -E '^BENCH_' | grep -v '^BENCH_RESULTS=' | sort | sed 's/^/, /' | tr -d '\n'
    printf '.\n'
  } >>"$BENCH_RESULTS"
fi

failed=0
t_all=$(date +%s)
for b in $benches; do
  [ -f "tests/bench/$b.lua" ] || { echo "bench: no benchmark $b" >&2; failed=$((failed + 1)); continue; }
  echo "== bench $b"
  t0=$(date +%s)
  timeout -k 10 "${BENCH_TIMEOUT:-1500}" "$MW_BIN" script "tests/bench/$b.lua"
  rc=$?
  echo "== bench $b: exit $rc after $(($(date +%s) - t0)) s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
done
echo "bench: $(($(date +%s) - t_all)) s in all, $failed failed"
[ "$failed" -eq 0 ]
