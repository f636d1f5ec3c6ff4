#!/usr/bin/env bash
# herald's network benchmark: herald against its peers (Node ws, a hand-written websocketpp
# broadcast server, Socket.IO over polling), same workload, same run, over 127.0.0.1.
#
#   benchmarks/run.sh            every scenario, 3 repetitions, interleaved (~20 min)
#   benchmarks/run.sh --quick    the main scenarios once, shorter (~3 min)
#   benchmarks/run.sh --reps N --only 'fanout-1000'   N repetitions of the scenarios matching a regex
#   benchmarks/run.sh --uws-src DIR [--usockets-src DIR]   also uWebSockets (DIR: its source tree,
#                                with uSockets in DIR/uSockets unless --usockets-src names it)
#
# Builds Release into benchmarks/out/net-build, installs the Node peers (benchmarks/net/peers,
# pinned by its lockfile), pins each server to core 0 and the load generator to core 1, and
# prints a table of medians. Writes benchmarks/out/net-results.jsonl (every run),
# benchmarks/results/net.png, and the "network benchmark" section of benchmarks/RESULTS.md.
# Every run is bounded (timeout) and every server is stopped by this script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reps=3 quick=0 only="" uws_src="" usockets_src=""
while (($#)); do
  case $1 in
    --quick) quick=1; reps=1 ;;
    --reps) reps=$2; shift ;;
    --only) only=$2; shift ;;
    --uws-src) uws_src=$(realpath -m "$2"); shift ;;
    --usockets-src) usockets_src=$(realpath -m "$2"); shift ;;
    *) echo "usage: benchmarks/run.sh [--quick] [--reps N] [--only REGEX] [--uws-src DIR [--usockets-src DIR]]"; exit 2 ;;
  esac
  shift
done

out=benchmarks/out
build=$out/net-build
mkdir -p "$out" benchmarks/results
scripts/setup.sh >/dev/null
command -v node >/dev/null || { echo "run.sh: node is needed for the peers (scripts/setup.sh --browser installs it)"; exit 1; }

# uWebSockets is a peer only when its sources are given (they are not vendored here).
targets=(herald-netload herald-bench-server herald-bench-wspp)
uws="" uws_version=""
if [[ -n "$uws_src" ]]; then
  [[ -f "$uws_src/src/App.h" ]] || { echo "run.sh: --uws-src $uws_src: no src/App.h there (a uWebSockets source tree?)"; exit 2; }
  [[ -f "${usockets_src:-$uws_src/uSockets}/src/libusockets.h" ]] \
    || { echo "run.sh: no uSockets in ${usockets_src:-$uws_src/uSockets} (give --usockets-src DIR)"; exit 2; }
  targets+=(herald-bench-uws) uws=uws
  # Their commits for the report when they are git checkouts (a git-archive export has none).
  rev() { [[ "$(git -C "$1" rev-parse --show-toplevel 2>/dev/null)" == "$1" ]] && git -C "$1" rev-parse --short=12 HEAD || echo "?"; }
  uws_version="$(rev "$uws_src"), uSockets $(rev "${usockets_src:-$uws_src/uSockets}")"
  echo "== uWebSockets: $uws_src ($uws_version)"
else
  echo "== uWebSockets: skipped (give --uws-src DIR, a uWebSockets source tree with uSockets in DIR/uSockets; benchmarks/README.md)"
fi

echo "== build (Release, $build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF \
      -DHERALD_BUILD_BENCHMARKS=ON -DHERALD_INSTALL=OFF \
      -DHERALD_UWS_SRC="$uws_src" -DHERALD_USOCKETS_SRC="$usockets_src" > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j2 --target "${targets[@]}" > "$build.build.log" 2>&1 \
  || { tail -50 "$build.build.log"; exit 1; }
bin=$build/benchmarks/net

echo "== peers (npm ci in benchmarks/net/peers)"
if [[ ! -d benchmarks/net/peers/node_modules ]]; then
  (cd benchmarks/net/peers && npm ci --no-audit --no-fund --loglevel=error)
fi

# 10k connections on each side, plus slack.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= 20500 )) || echo "run.sh: ulimit -n is $(ulimit -n); the 10k-connection scenarios need ~10100 per process"

server_core=0 load_core=1
if (( $(nproc) < 2 )); then server_core=0 load_core=0; echo "run.sh: one core: server and load generator share it"; fi
port=19100
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# start_server NAME: starts it on a fresh port, pinned; sets server_pid, path, transport.
start_server() {
  port=$((port + 1))
  local log=$out/net-server.log
  case $1 in
    herald|herald-lp) taskset -c $server_core "$bin/herald-bench-server" --port $port > "$log" 2>&1 & ;;
    wspp) taskset -c $server_core "$bin/herald-bench-wspp" --port $port > "$log" 2>&1 & ;;
    uws) taskset -c $server_core "$bin/herald-bench-uws" --port $port > "$log" 2>&1 & ;;
    ws) taskset -c $server_core node benchmarks/net/peers/ws-server.mjs $port > "$log" 2>&1 & ;;
    socketio) taskset -c $server_core node benchmarks/net/peers/socketio-server.mjs $port > "$log" 2>&1 & ;;
  esac
  server_pid=$!
  local t0=$SECONDS
  for _ in $(seq 1200); do
    grep -q "^port" "$log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q "^port" "$log"; then
    echo "run.sh: $1 did not start within $((SECONDS - t0)) s (state: $(ps -o stat= -p "$server_pid" 2>/dev/null || echo gone)):"
    cat "$log"
    return 1
  fi
  case $1 in
    herald) path=/herald/ws transport=websocket ;;
    herald-lp) path=/herald/ws transport=herald-longpoll ;;
    wspp|ws|uws) path=/ transport=websocket ;;
    socketio) path=/ transport=socketio ;;
  esac
}

# Scenarios: label | servers | load generator arguments.
if (( quick )); then d=2; w=1; else d=4; w=1; fi
scenarios=(
  "fanout-100-paced|herald $uws wspp ws|--connections 100 --window 4"
  "fanout-100-bursty|herald $uws wspp ws|--connections 100 --window 256"
  "fanout-1000-paced|herald $uws wspp ws|--connections 1000 --window 4"
  "fanout-1000-bursty|herald $uws wspp ws|--connections 1000 --window 256"
  "fanout-10000-paced|herald $uws wspp ws|--connections 10000 --window 4 --max-inflight 128"
  "fanout-10000-bursty|herald $uws wspp ws|--connections 10000 --window 256 --max-inflight 128"
  "channels-10000|herald $uws wspp ws|--connections 10000 --groups 100 --window 64"
  "latency-1000-at-20|herald $uws wspp ws|--connections 1000 --rate 20"
  "latency-1000-at-1000|herald $uws wspp ws|--connections 1000 --rate 1000"
  "idle-10000|herald $uws wspp ws|--connections 10000 --groups 10000 --idle"
  "longpoll-1000|herald-lp socketio|--connections 1000 --max-inflight 64"
  # Last, so that --quick's picks above keep their places: issue 14's row against uWebSockets.
  "fanout-1000-window-16|herald $uws wspp ws|--connections 1000 --window 16"
)
if (( quick )); then
  scenarios=("${scenarios[@]:0:4}" "${scenarios[8]}" "${scenarios[9]}" "${scenarios[10]}")
fi

results=$out/net-results.jsonl
: > "$results"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== runs: ${#scenarios[@]} scenarios x $reps repetitions (servers interleaved), ${d}s measured each"
for ((rep = 1; rep <= reps; rep++)); do
  for sc in "${scenarios[@]}"; do
    IFS='|' read -r label servers args <<< "$sc"
    [[ -n "$only" && ! "$label" =~ $only ]] && continue
    for s in $servers; do
      if ! start_server "$s"; then
        stop_server
        printf '{"label":"%s","server":"%s","exit":9,"error":"server did not start"}\n' "$label" "$s" >> "$results"
        continue
      fi
      extra=(--warmup $w --duration $d)
      [[ "$label" == latency-* ]] && extra=(--warmup 1 --duration $((d + 1)))
      # shellcheck disable=SC2086
      line=$(taskset -c $load_core timeout 180 "$bin/herald-netload" --port $port --path $path --transport $transport \
               --server "$s" --server-pid "$server_pid" --label "$label" ${args} "${extra[@]}" 2> "$out/net-loadgen.err") \
        || line=$(printf '{"label":"%s","server":"%s","exit":%d,"error":"%s"}' "$label" "$s" $? \
                  "$(tr -d '"\\' < "$out/net-loadgen.err" | tr '\n' ' ' | cut -c1-200)")
      stop_server
      [[ "$args" == *"--connections 10000"* ]] && sleep 2  # let the kernel finish closing 20k sockets
      echo "$line" >> "$results"
      /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("  rep %d  %-22s %-9s %s" % (int(sys.argv[2]), r["label"], r["server"],
        ("%.0f B/conn" % r["bytes_per_conn"]) if "bytes_per_conn" in r else
        ("%.0f deliveries/s  p99 %.1f ms  lost %d  undelivered %d  late %d  server cpu %.2f  loadgen cpu %.2f" % (r["deliveries_per_s"], r["lat_p99_us"]/1000,
          r["gaps"], r["missing"], r["late"], r["server_cpu"], r["loadgen_cpu"])) if "deliveries_per_s" in r else "FAILED: " + r.get("error","")))' \
        "$line" "$rep"
    done
  done
done

echo "== report"
/usr/bin/python3 benchmarks/net/report.py "$results" --reps "$reps" --quick "$quick" ${uws:+--uws-version "$uws_version"} \
  --results-md benchmarks/RESULTS.md --readme benchmarks/README.md --chart benchmarks/results/net.png
