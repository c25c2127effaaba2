#!/usr/bin/env bash
# Makes sure a Docker engine answers: `engine.sh up` prints "started" when it had to start
# dockerd itself (root only), "running" when one already answered; `engine.sh down` stops
# only a dockerd this script started, and returns once it and its containerd are gone.
# Seen here (shared/notes/test-engine.md, issue 15): dockerd answers ~2 s after a clean start;
# a killed one leaves its pid file behind; a dockerd started while the previous one's
# containerd is still going away times out on the containerd socket and never answers.
set -uo pipefail
PIDFILE=/run/mw-test-dockerd.pid
LOG=${MW_DOCKERD_LOG:-/tmp/mw-test-dockerd.log}
EXEC_ROOT=/var/run/docker
# How long a starting dockerd may take to answer. A cold start with a large /var/lib/docker
# or a loaded machine takes tens of seconds, not 2.
START_SECS=${MW_DOCKERD_START_SECS:-120}

answers() {
  timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Waits up to $2 tenths of a second for every pid in $1 to be gone; 0 when they are.
wait_gone() {
  local pids=$1 n=$2 p left
  for _ in $(seq 1 "$n"); do
    left=
    for p in $pids; do alive "$p" && left=1; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  return 1
}

# The dockerd and containerd processes left by any earlier start on this exec root: a dockerd
# whose pid file names a live process, and the containerd it ran (pid file under the exec root).
leftovers() {
  local f p
  for f in "$PIDFILE" /var/run/docker.pid "$EXEC_ROOT/containerd/containerd.pid"; do
    [ -f "$f" ] || continue
    p=$(cat "$f" 2>/dev/null)
    alive "$p" && echo "$p"
  done
}

# Sends TERM to $1 and waits up to 30 s for every pid in $2 to exit, then KILLs them all.
stop_pids() {
  local signal=$1 all=$2
  [ -n "${all// /}" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $signal 2>/dev/null
  wait_gone "$all" 300 && return 0
  # shellcheck disable=SC2086
  kill -KILL $all 2>/dev/null
  wait_gone "$all" 100
}

case "${1:-up}" in
  up)
    if answers; then echo running; exit 0; fi
    if [ "$(id -u)" -ne 0 ]; then
      echo "no Docker engine answers and I am not root to start one" >&2; exit 1
    fi
    command -v dockerd >/dev/null || { echo "dockerd is not installed (make deps)" >&2; exit 1; }
    # A dockerd or containerd still shutting down (or hung) holds the exec root and the
    # containerd socket: let it finish, or end it, before starting a new one.
    old=$(leftovers | sort -u | tr '\n' ' ')
    if [ -n "${old// /}" ]; then
      echo "engine: waiting for the previous dockerd/containerd ($old) to exit" >&2
      wait_gone "$old" 150 || stop_pids "$old" "$old" || {
        echo "engine: the previous dockerd/containerd ($old) will not exit" >&2; exit 1; }
    fi
    # pid files and sockets whose process is gone block or confuse a new dockerd
    for f in "$PIDFILE" /var/run/docker.pid "$EXEC_ROOT/containerd/containerd.pid"; do
      if [ -f "$f" ] && ! alive "$(cat "$f" 2>/dev/null)"; then rm -f "$f"; fi
    done
    rm -f "$EXEC_ROOT/containerd/containerd.sock" "$EXEC_ROOT/containerd/containerd.sock.ttrpc" \
          "$EXEC_ROOT/containerd/containerd-debug.sock"
    # The default address pools hold about 30 bridge networks; every test stack has one, and an
    # interrupted run leaves its networks on the engine's disk (seen: "could not find an available,
    # non-overlapping IPv4 address pool" once 30 were in use). 256 /24s for the engine we start.
    setsid dockerd --pidfile "$PIDFILE" --default-address-pool base=10.213.0.0/16,size=24 \
      >"$LOG" 2>&1 < /dev/null &
    pid=$!
    for _ in $(seq 1 $((START_SECS * 10))); do
      if answers; then echo started; exit 0; fi
      if ! alive "$pid"; then
        echo "dockerd exited while starting; its log: $LOG" >&2
        tail -5 "$LOG" >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "dockerd did not answer within $START_SECS s; its log: $LOG" >&2
    tail -5 "$LOG" >&2
    exit 1
    ;;
  down)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    # the containerd this dockerd runs goes with it; wait for both
    cpid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null)
    alive "$cpid" || cpid=
    stop_pids "$pid" "$pid $cpid" || { echo "engine: dockerd $pid or containerd $cpid did not exit" >&2; exit 1; }
    rm -f "$PIDFILE"
    ;;
  *)
    echo "usage: engine.sh up|down" >&2; exit 2
    ;;
esac
