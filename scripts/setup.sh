#!/usr/bin/env bash
# Installs what herald's build, demo and tests need on a Debian 12 machine, only what is missing.
# Idempotent: a second run installs nothing. Usage: scripts/setup.sh [--browser]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make libasio-dev libwebsocketpp-dev libssl-dev catch2 nlohmann-json3-dev
          libhiredis-dev redis-server redis-sentinel libpq-dev postgresql nginx-light libcli11-dev libbenchmark-dev
          python3-matplotlib clang-14 libfuzzer-14-dev libclang-rt-14-dev prometheus)
if [[ "${1:-}" == "--browser" || "${HERALD_SETUP_BROWSER:-0}" == 1 ]]; then
  packages+=(chromium nodejs)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# nodejs may come from another repository with its own npm; accept any working node + npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs ]] || tmp+=("$p"); done; missing=("${tmp[@]}")
elif [[ " ${packages[*]} " == *" nodejs "* ]]; then
  missing+=(npm)
fi

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# JavaScript test tooling (Node ws, playwright-core driving Debian's chromium), pinned by the lockfile.
if [[ " ${packages[*]} " == *" chromium "* && -f tests/js/package.json ]]; then
  if [[ ! -d tests/js/node_modules ]]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
