#!/usr/bin/env bash
# Profiles herald's side of one core benchmark scenario with perf (software cpu-clock event,
# which works on VMs without hardware counters) and prints the top self-time entries.
#   benchmarks/profile-core.sh a|b|c [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-a}; seconds=${2:-3}
build=benchmarks/out/prof-build
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-g -fno-omit-frame-pointer" \
      -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF -DHERALD_BUILD_BENCHMARKS=ON -DHERALD_INSTALL=OFF \
      > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j2 --target herald_core_bench > "$build.build.log" 2>&1 || { cat "$build.build.log"; exit 1; }
data=benchmarks/out/perf-$scenario.data
timeout 300 perf record -q -e cpu-clock -F 2000 -g -o "$data" -- "$build/benchmarks/core/herald_core_bench" \
  --benchmark_filter="\\($scenario\\).*herald" --benchmark_repetitions=1 --benchmark_min_time="$seconds" > /dev/null 2>&1
perf report -i "$data" --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null \
  | grep -vE '^#|^$' | sed -E 's/nlohmann::json_abi[^ ]*::detail::([a-z_]+)<.*>::/nlohmann::detail::\1<...>::/' \
  | awk '{ $2=""; $3=""; print }' | cut -c1-140
