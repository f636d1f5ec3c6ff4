#!/usr/bin/env bash
# herald core benchmark: in-process fan-out deliveries/s, herald against a naive baseline
# measured in the same run (README.md, "Performance (in-process core)"; benchmarks/RESULTS.md).
# Builds Release into its own directory,
# runs bounded (1-2 minutes; killed past 15), prints a table.
#   benchmarks/run-core.sh                         9 repetitions per case, interleaved
#   benchmarks/run-core.sh --benchmark_filter='\(a\)'   any Google Benchmark flag
set -euo pipefail
cd "$(dirname "$0")/.."
build=benchmarks/out/core-build
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF \
      -DHERALD_BUILD_BENCHMARKS=ON -DHERALD_INSTALL=OFF > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j2 --target herald_core_bench > "$build.build.log" 2>&1 \
  || { cat "$build.build.log"; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "compiler: $(${CXX:-c++} --version | head -1)"
exec timeout 900 "$build/benchmarks/core/herald_core_bench" "$@"
