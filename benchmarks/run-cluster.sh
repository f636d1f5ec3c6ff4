#!/usr/bin/env bash
# Cross-server throughput on the Redis backplane with 1 and with 2 shards (benchmarks/cluster).
#
#   benchmarks/run-cluster.sh              3 repetitions of each, interleaved (~1-2 min)
#   benchmarks/run-cluster.sh --reps N [--messages N] [--channels N]
#
# Builds Release into benchmarks/out/cluster-build, starts two redis-server of its own on free
# loopback ports (no persistence), runs herald-bench-shards against the first, then against
# both, and prints every run and the medians. Writes benchmarks/out/cluster-results.jsonl.
# The Redis are stopped by pid on exit, also on failure or Ctrl-C; each run is bounded (timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=3 messages=100000 channels=64
while (($#)); do
  case $1 in
    --reps) reps=$2; shift ;;
    --messages) messages=$2; shift ;;
    --channels) channels=$2; shift ;;
    *) echo "usage: benchmarks/run-cluster.sh [--reps N] [--messages N] [--channels N]"; exit 2 ;;
  esac
  shift
done
command -v redis-server >/dev/null || { echo "run-cluster.sh: redis-server is needed (scripts/setup.sh)"; exit 1; }

out=benchmarks/out
build=$out/cluster-build
mkdir -p "$out"
echo "== build (Release, $build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF \
      -DHERALD_BUILD_BENCHMARKS=ON -DHERALD_INSTALL=OFF > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j2 --target herald-bench-shards > "$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
bench=$build/benchmarks/cluster/herald-bench-shards

dir=$(mktemp -d /tmp/herald-bench-redis-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=()
for i in 0 1; do
  port=$(free_port)
  mkdir -p "$dir/$i"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$i" \
               --logfile "$dir/$i/redis.log" --daemonize no --protected-mode no >/dev/null 2>&1 &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done
done

# utime + stime of each Redis, in clock ticks (1/100 s), comma separated
redis_ticks() {
  local out=()
  for pid in "${pids[@]}"; do out+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done
  (IFS=,; echo "${out[*]}")
}
results=$out/cluster-results.jsonl
one="127.0.0.1:${ports[0]}" two="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}"
echo "== $reps x (1 shard, 2 shards): $messages publishes over $channels channels, 1 publishing + 2 subscribing servers"
for rep in $(seq "$reps"); do
  for redis in "$one" "$two"; do
    for port in "${ports[@]}"; do redis-cli -p "$port" flushall >/dev/null; done
    before=$(redis_ticks)
    t0=$(date +%s.%N)
    line=$(/usr/bin/time -f '%U %S' -o "$dir/time" timeout 300 "$bench" --redis "$redis" --messages "$messages" --channels "$channels")
    t1=$(date +%s.%N)
    after=$(redis_ticks)
    # CPU in cores over the run (1.00: one core busy throughout): each Redis, and herald's process
    # (the three servers' hubs and connections, the clients, the publishing loop).
    cpu=$(python3 -c "import sys; b,a,t=sys.argv[1].split(','),sys.argv[2].split(','),float(sys.argv[3]); h=sum(map(float,open(sys.argv[4]).read().split())); print('{\"redis_cpu\":[%s],\"herald_cpu\":%.2f,\"seconds\":%.2f}' % (','.join('%.2f' % ((int(y)-int(x))/100/t) for x,y in zip(b,a)), h/t, t))" "$before" "$after" "$(echo "$t1 - $t0" | bc)" "$dir/time")
    echo "$line $cpu"
    echo "{\"when\":\"$(date -u +%FT%TZ)\",\"run\":$line,\"cpu\":$cpu}" >> "$results"
  done
done | tee "$out/cluster-last.txt"
python3 - "$out/cluster-last.txt" <<'PY'
import json, statistics, sys
runs = []
for l in open(sys.argv[1]):
    if l.startswith('{'):
        run, cpu = l.split(' ', 1)
        runs.append({**json.loads(run), **json.loads(cpu)})
for n in sorted({r['shards'] for r in runs}):
    mine = [r for r in runs if r['shards'] == n]
    med = lambda f: statistics.median(f(r) for r in mine)
    redis = ', '.join('%.2f' % med(lambda r: r['redis_cpu'][i]) for i in range(n))
    print(f"shards {n}: ordered {med(lambda r: r['ordered_per_s']):,.0f} msg/s, "
          f"delivered {med(lambda r: r['delivered_per_s']):,.0f} msg/s; "
          f"CPU (cores): Redis {redis}, herald {med(lambda r: r['herald_cpu']):.2f} (median of {len(mine)})")
PY
