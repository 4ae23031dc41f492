#!/usr/bin/env bash
# Instructions per request of the rpc_proxy's Bolt path, under valgrind's callgrind: a measure
# that does not depend on the machine's noise, for comparing two builds of sluice.
#   scripts/bench/callgrind_bolt.sh BIN [BIN...]     (default: target/release/sluice)
# Each build gets the same config (one worker, rpc_proxy to a boltbench echo server) and the
# same load (boltbench load, 50 connections x 20 in flight, 10 s); the figure is the process's
# whole instruction count (start-up included, a few million) over the requests it answered.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
boltbench=$root/target/release/boltbench
[ -x "$boltbench" ] || cargo build --release -p sluice-benchtools --bin boltbench --manifest-path "$root/Cargo.toml"
command -v valgrind >/dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 1; }
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/target/release/sluice")
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port)
"$boltbench" echo --listen "127.0.0.1:$up" > "$tmp/echo.out" &
for i in $(seq 50); do grep -q . "$tmp/echo.out" 2>/dev/null && break; sleep 0.1; done
service=com.alipay.sofa.bench.EchoService:1.0
for bin in "${bins[@]}"; do
  port=$(free_port); admin=$(free_port)
  cat > "$tmp/sluice.yaml" <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admin}}}
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $port}}
    filter_chains:
    - filters:
      - name: sluice.filters.network.rpc_proxy
        typed_config:
          "@type": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: echo
              services: ["$service"]
              routes:
              - route: {cluster: upstream}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $up}}}
YAML
  out="$tmp/callgrind.out"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" -c "$tmp/sluice.yaml" --concurrency 1 -l error 2> "$tmp/vg.err" &
  vg=$!
  for i in $(seq 300); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break; sleep 0.2; done
  "$boltbench" load --target "127.0.0.1:$port" --connections 50 --pipeline 20 --seconds 10 --service "$service" > /dev/null
  requests=$(curl -sf "http://127.0.0.1:$admin/stats/prometheus" | awk '/^sluice_rpc_downstream_rq_total/ {print $2}')
  kill -TERM $vg; wait $vg || true
  total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$out")
  echo "$bin: $requests requests, $total instructions, $(( total / requests )) per request"
done
