#!/usr/bin/env bash
# 100,000 idle WebSocket connections held by herald on this machine at once (issue 14), each
# subscribed to a channel of its own, as in run.sh's idle-10000.
#
#   benchmarks/idle-100k.sh [--connections 100000] [--per-process 17000]
#
# One process may hold only 20,000 descriptors here (the hard limit; raising it needs
# CAP_SYS_RESOURCE, which these machines do not give), and each connection takes one in the
# server and one in the load generator. So the connections are spread over several herald
# processes (herald-bench-server, each on its own port, all pinned to core 0) and as many load
# generators (pinned to core 1), started together. When every load generator has its
# connections subscribed and holds them, the script counts the servers' established sockets
# (ss), sums the servers' RSS growth, and stops everything it started, by pid. Nothing here
# waits without a bound: connecting has --setup-timeout, a load generator holds its
# connections at most 300 s, and each runs under `timeout`.
#
# Prints one table and writes benchmarks/out/idle-100k.json.
set -euo pipefail
cd "$(dirname "$0")/.."
total=100000 per=17000 hold=300
while (($#)); do
  case $1 in
    --connections) total=$2; shift ;;
    --per-process) per=$2; shift ;;
    *) echo "usage: benchmarks/idle-100k.sh [--connections N] [--per-process N]"; exit 2 ;;
  esac
  shift
done
(( per <= 19000 )) || { echo "idle-100k.sh: --per-process $per: at most 19000 fit under the 20,000-descriptor limit"; exit 2; }

out=benchmarks/out
build=$out/net-build
mkdir -p "$out"
scripts/setup.sh >/dev/null
echo "== build (Release, $build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF \
      -DHERALD_BUILD_BENCHMARKS=ON -DHERALD_INSTALL=OFF > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j2 --target herald-netload herald-bench-server > "$build.build.log" 2>&1 \
  || { tail -50 "$build.build.log"; exit 1; }
bin=$build/benchmarks/net
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= per + 200 )) || { echo "idle-100k.sh: ulimit -n is $(ulimit -n), below --per-process $per"; exit 1; }

procs=$(( (total + per - 1) / per ))
base_port=19700
server_core=0 load_core=1
(( $(nproc) >= 2 )) || load_core=0
server_pids=() load_pids=()
stop_all() {
  for p in "${load_pids[@]}" "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${load_pids[@]}" "${server_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
trap stop_all EXIT
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

echo "== $total connections over $procs herald processes (at most $per each; ulimit -n $(ulimit -n))"
rm -f "$out"/idle-100k-*  # a run with more processes left files that the waits below would count
declare -a rss0
for ((i = 0; i < procs; i++)); do
  port=$((base_port + i))
  taskset -c $server_core "$bin/herald-bench-server" --port $port > "$out/idle-100k-server-$i.log" 2>&1 &
  server_pids+=($!)
done
for ((i = 0; i < procs; i++)); do
  for _ in $(seq 200); do grep -q "^port" "$out/idle-100k-server-$i.log" 2>/dev/null && break; sleep 0.05; done
  grep -q "^port" "$out/idle-100k-server-$i.log" || { echo "server $i did not start:"; cat "$out/idle-100k-server-$i.log"; exit 1; }
  rss0[i]=$(rss_kib "${server_pids[i]}")
done

t0=$(date +%s.%N)
for ((i = 0; i < procs; i++)); do
  n=$(( i == procs - 1 ? total - per * (procs - 1) : per ))
  taskset -c $load_core timeout $((hold + 200)) "$bin/herald-netload" --port $((base_port + i)) --path /herald/ws \
    --transport websocket --server herald --server-pid "${server_pids[i]}" --label idle-100k \
    --connections "$n" --groups "$n" --idle --hold "$hold" --setup-timeout 150 \
    > "$out/idle-100k-load-$i.json" 2> "$out/idle-100k-load-$i.err" &
  load_pids+=($!)
done

# Wait until every load generator holds its connections (or one of them gave up).
ready=0
for _ in $(seq 3200); do  # 160 s (setup-timeout 150 s)
  ready=$(cat "$out"/idle-100k-load-*.err 2>/dev/null | grep -c "holding" || true)
  (( ready == procs )) && break
  for p in "${load_pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a load generator ended early:"; cat "$out"/idle-100k-load-*.err; exit 1; }; done
  sleep 0.05
done
t1=$(date +%s.%N)
(( ready == procs )) || { echo "only $ready of $procs load generators got their connections:"; cat "$out"/idle-100k-load-*.err; exit 1; }
sleep 1.5  # as run.sh's idle scenarios: let the servers settle before reading their memory

# The servers' side of every connection: established sockets on the servers' ports.
held=$(ss -Htn state established "( sport >= :$base_port and sport <= :$((base_port + procs - 1)) )" | wc -l)
rss_total=0 rss_line=""
for ((i = 0; i < procs; i++)); do
  r=$(rss_kib "${server_pids[i]}")
  rss_total=$((rss_total + r - rss0[i]))
  rss_line+="$((r - rss0[i])) "
done
tcp_mem_pages=$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat)
setups=$(grep -ho "ready in [0-9.]* s" "$out"/idle-100k-load-*.err | awk '{print $3}' | tr '\n' ' ')
connect_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
per_conn=$(( rss_total * 1024 / total ))

printf '\n| connections asked | held at once (server sockets, ss) | herald processes | time until all were subscribed | server RSS growth | per connection | kernel TCP buffer memory (/proc/net/sockstat) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| %d | %d | %d | %.1f s (each process: %s s) | %.1f MiB (per process KiB: %s) | %d B | %d KiB |\n' \
  "$total" "$held" "$procs" "$connect_s" "${setups% }" "$(awk -v k="$rss_total" 'BEGIN {print k / 1024}')" "${rss_line% }" "$per_conn" \
  $(( tcp_mem_pages * 4 ))
printf '{"connections":%d,"held":%d,"processes":%d,"connect_s":%s,"rss_growth_kib":%d,"bytes_per_conn":%d,"tcp_mem_pages":%d}\n' \
  "$total" "$held" "$procs" "$connect_s" "$rss_total" "$per_conn" "$tcp_mem_pages" > "$out/idle-100k.json"
(( held >= total )) || { echo "idle-100k.sh: only $held of $total connections were held at once"; exit 1; }
