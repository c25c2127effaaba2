#!/usr/bin/env bash
# Runs a command with a Docker engine answering; stops the engine afterwards if it started it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$("$here/engine.sh" up) || exit 1
if [ "$state" = started ]; then
  echo "mw: no Docker engine answered; started dockerd (it stops when this ends)" >&2
  trap '"$here/engine.sh" down' EXIT
fi
"$@"
