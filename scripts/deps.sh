#!/usr/bin/env bash
# Installs the Debian packages mw needs to build and test; prints the apt-get line when not root.
set -euo pipefail
pkgs=(build-essential pkg-config liblua5.4-dev libcurl4-openssl-dev libuv1-dev lua-cjson-dev libyaml-dev libhttp-parser-dev
      busybox-static docker.io lua5.4 lua-check
      etcd-server    # etcd-server: the coordination tests and benchmark (mw run --coord etcd://)
      docker-registry)   # the pull-policy tests' registry on loopback (tests/engine/test_pull.lua)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "mw needs: apt-get install -y ${missing[*]}" >&2
  echo "run that as root, then try again" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || apt-get update
apt-get install -y -qq "${missing[@]}" >/dev/null
