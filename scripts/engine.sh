#!/usr/bin/env bash
# Makes sure a Docker engine answers: `engine.sh up` prints "started" when it had to start
# dockerd itself (root only), "running" when one already answered; `engine.sh down` stops
# only a dockerd this script started.  Seen here: dockerd answers ~2 s after start, and a
# killed one leaves its pid file behind (shared/notes/test-engine.md).
set -uo pipefail
PIDFILE=/run/mw-test-dockerd.pid
LOG=${MW_DOCKERD_LOG:-/tmp/mw-test-dockerd.log}

answers() {
  timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

case "${1:-up}" in
  up)
    if answers; then echo running; exit 0; fi
    if [ "$(id -u)" -ne 0 ]; then
      echo "no Docker engine answers and I am not root to start one" >&2; exit 1
    fi
    command -v dockerd >/dev/null || { echo "dockerd is not installed (make deps)" >&2; exit 1; }
    # a pid file whose process is gone blocks a new dockerd
    for f in "$PIDFILE" /var/run/docker.pid; do
      if [ -f "$f" ] && ! kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null; then rm -f "$f"; fi
    done
    setsid dockerd --pidfile "$PIDFILE" >"$LOG" 2>&1 < /dev/null &
    for _ in $(seq 1 300); do
      if answers; then echo started; exit 0; fi
      sleep 0.1
    done
    echo "dockerd did not answer within 30 s; its log: $LOG" >&2
    tail -5 "$LOG" >&2
    exit 1
    ;;
  down)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    ;;
esac
