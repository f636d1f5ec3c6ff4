#!/usr/bin/env bash
# Builds and runs the CMS demo: http://127.0.0.1:8080/ (one process, in-memory backplane).
# Extra arguments go to the demo, e.g. scripts/demo.sh --port 9000 --no-websocket
# scripts/demo.sh --build-only builds it and prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_BENCHMARKS=OFF > build-demo.log 2>&1 \
  || { cat build-demo.log; exit 1; }
cmake --build build-demo --target herald-cms-demo -j "$(nproc)" >> build-demo.log 2>&1 || { tail -50 build-demo.log; exit 1; }
if [[ "${1:-}" == "--build-only" ]]; then echo "$PWD/build-demo/examples/cms-demo/herald-cms-demo"; exit 0; fi
exec build-demo/examples/cms-demo/herald-cms-demo "$@"
