#!/usr/bin/env bash
# herald on several servers: Redis, three CMS demo servers sharing it, and nginx in front,
# balancing round robin with no sticky sessions. One command, Ctrl-C stops everything.
#   examples/cluster/run.sh            → http://127.0.0.1:8080/
# Ports: nginx 8080, herald 8091-8093, Redis 6390, Prometheus 8099 (override with
# HERALD_CLUSTER_PORT_BASE=N: nginx N, herald N+11..N+13, Redis N+310, Prometheus N+19).
# Prometheus scrapes every herald's /herald/metrics with a token (http://127.0.0.1:8099/,
# try `herald_clients` or `rate(herald_messages_delivered_total[1m])`); nginx does not pass
# /herald/metrics to the public.
# Try: open two windows, then `kill -TERM` one herald (a deploy: its editors are told to come
# back later, and land on the others) or `kill -9` one (a crash): the pages carry on.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${HERALD_CLUSTER_PORT_BASE:-8080}
nginx_port=$base; redis_port=$((base + 310)); prometheus_port=$((base + 19))
ports=($((base + 11)) $((base + 12)) $((base + 13)))

demo=$(scripts/demo.sh --build-only | tail -1)
work=$(mktemp -d /tmp/herald-cluster.XXXXXX)
chmod 755 "$work"; mkdir -p "$work/tmp"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --logfile "$work/redis.log" &
pids+=($!)

# One key signs the pages' herald tokens on every server: a token from one is good on all.
token_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Prometheus reads /herald/metrics with this token.
metrics_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 0 1 2; do
  # The demo's CMS state lives in one process (a real CMS keeps it in its database): the
  # simulated editors run on the first server only; every server pushes every update.
  interval=1500; [[ $i == 0 ]] || interval=0
  "$demo" --port "${ports[$i]}" --redis "127.0.0.1:$redis_port" --server-id "herald-$((i + 1))" \
          --interval-ms "$interval" --token-secret "$token_secret" --metrics-token "$metrics_token" \
          > "$work/herald-$((i + 1)).log" 2>&1 &
  pids+=($!)
  echo "herald-$((i + 1)): pid $! on 127.0.0.1:${ports[$i]}"
done

cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log $work/nginx-access.log;
    client_body_temp_path $work/tmp/body; proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi; uwsgi_temp_path $work/tmp/uwsgi; scgi_temp_path $work/tmp/scgi;
    upstream herald { server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; server 127.0.0.1:${ports[2]}; }
    server {
        listen 127.0.0.1:$nginx_port;
        location = /herald/metrics { return 404; }  # for Prometheus only, not the public
        location /herald/ {                      # round robin, no affinity
            proxy_pass http://herald;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$http_host;
            proxy_read_timeout 75s;
            proxy_buffering off;
        }
        location / {                             # the CMS's pages and API
            proxy_pass http://127.0.0.1:${ports[0]};
            proxy_set_header Host \$http_host;
        }
    }
}
CONF
nginx -p "$work" -c "$work/nginx.conf" &
pids+=($!)

if command -v prometheus >/dev/null; then
  cat > "$work/prometheus.yml" <<CONF
global: {scrape_interval: 5s}
scrape_configs:
  - job_name: herald
    metrics_path: /herald/metrics
    authorization: {credentials: $metrics_token}
    static_configs: [{targets: ['127.0.0.1:${ports[0]}', '127.0.0.1:${ports[1]}', '127.0.0.1:${ports[2]}']}]
CONF
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
             --web.listen-address="127.0.0.1:$prometheus_port" > "$work/prometheus.log" 2>&1 &
  pids+=($!)
  echo "prometheus: pid $! on http://127.0.0.1:$prometheus_port/ (scrapes the three heralds)"
fi
sleep 1
echo "nginx: round robin over ${ports[*]} on http://127.0.0.1:$nginx_port/  (logs in $work; Ctrl-C stops)"
wait -n "${pids[@]}" || true
echo "a process of the cluster ended; see the logs in $work" >&2
wait
