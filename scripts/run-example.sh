#!/usr/bin/env bash
# sluice's main job on an example config. Builds what it needs first; Ctrl-C stops everything.
#
#   scripts/run-example.sh        a TCP proxy on 127.0.0.1:10000 in front of a small web server
#                                 on 127.0.0.1:8080 (examples/envoy.yaml)
#   scripts/run-example.sh http   HTTP/1.1 and h2c at L7 on 127.0.0.1:10000 (connection manager,
#                                 routes, retries, access log) in front of the same web server
#                                 (examples/http.yaml)
#   scripts/run-example.sh bolt   SOFARPC/Bolt routed at L7 on 127.0.0.1:12200 in front of two
#                                 Bolt echo servers on 127.0.0.1:12201-12202 (examples/bolt.yaml)
#   scripts/run-example.sh tap    (root) the TCP proxy on sluice's own TCP/IP stack behind a TAP
#                                 device, clients in a network namespace (examples/tap.yaml);
#                                 sets up the topology and tears it down on exit
#   scripts/run-example.sh dpdk   (root) the same in DPDK mode: DPDK's net_tap device as the port,
#                                 the stack polled on CPU 1 (examples/dpdk.yaml)
#   scripts/run-example.sh xds    sluice configured over xDS: an ADS server (third-party library)
#                                 on 127.0.0.1:18000 serves a TCP proxy on 127.0.0.1:10000 with
#                                 an EDS cluster; sluice-control applies it (examples/xds.yaml)
#
# The admin API is on 127.0.0.1:9901 in all of them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
which=${1:-tcp}
if [ "$which" = dpdk ]; then
  scripts/setup/deps.sh run-dpdk >/dev/null
elif [ "$which" = xds ]; then
  scripts/setup/deps.sh run-xds >/dev/null
else
  scripts/setup/deps.sh run >/dev/null
fi

# A small web server for the examples' upstream: web_server PORT BIND-ADDRESS PAGE-TEXT.
# Sets $upstream (its pid) and $www (its folder) for the caller's clean-up.
web_server() {
  www=$(mktemp -d)
  echo "$3" > "$www/index.html"
  python3 -m http.server "$1" --bind "$2" --directory "$www" >/dev/null 2>&1 &
  upstream=$!
}

case "$which" in
  tcp)
    cargo build --release --bin sluice
    web_server 8080 127.0.0.1 "hello from the upstream behind sluice"
    trap 'kill $upstream 2>/dev/null; rm -rf "$www"' EXIT
    cat <<MSG

  sluice is starting with examples/envoy.yaml:
    proxy:  curl http://127.0.0.1:10000/      (TCP proxy -> web server on 127.0.0.1:8080)
    admin:  curl http://127.0.0.1:9901/stats  (also /ready /clusters /listeners /config_dump)
    reload: edit examples/envoy.yaml, then   kill -HUP \$(pgrep -x sluice)

MSG
    target/release/sluice -c examples/envoy.yaml
    ;;
  http)
    cargo build --release --bin sluice
    web_server 8080 127.0.0.1 "hello from the upstream behind sluice"
    trap 'kill $upstream 2>/dev/null; rm -rf "$www"' EXIT
    cat <<MSG

  sluice is starting with examples/http.yaml (access log on stdout):
    HTTP/1.1:  curl -v http://127.0.0.1:10000/
    HTTP/2:    curl -v --http2-prior-knowledge http://127.0.0.1:10000/
    local:     curl http://127.0.0.1:10000/hello     curl -i http://127.0.0.1:10000/old/x
    stats:     curl 'http://127.0.0.1:9901/stats?filter=^http\\.'

MSG
    target/release/sluice -c examples/http.yaml
    ;;
  bolt)
    cargo build --release --bin sluice --bin boltbench
    target/release/boltbench echo --listen 127.0.0.1:12201 >/dev/null &
    one=$!
    target/release/boltbench echo --listen 127.0.0.1:12202 >/dev/null &
    two=$!
    trap 'kill $one $two 2>/dev/null' EXIT
    cat <<MSG

  sluice is starting with examples/bolt.yaml:
    load:   target/release/boltbench load --target 127.0.0.1:12200 --connections 4 --pipeline 8 \\
              --seconds 3 --service com.alipay.sofa.rpc.quickstart.HelloService:1.0
    admin:  curl http://127.0.0.1:9901/stats/prometheus  (sluice_rpc_*, sluice_cluster_upstream_rq_*)
            curl http://127.0.0.1:9901/clusters  (endpoint health from the Bolt heartbeat checks)

MSG
    target/release/sluice -c examples/bolt.yaml
    ;;
  tap)
    cargo build --release --bin sluice
    scripts/tap-topology.sh up
    web_server 9080 10.99.0.1 "hello from the host, through sluice's own TCP/IP stack"
    trap 'kill $upstream 2>/dev/null; rm -rf "$www"; scripts/tap-topology.sh down' EXIT
    cat <<MSG

  sluice is starting with examples/tap.yaml (its stack owns 10.99.0.2 behind TAP sluice0):
    proxy:  ip netns exec sluice-clients curl http://10.99.0.2:8080/
    ping:   ip netns exec sluice-clients ping -c 2 10.99.0.2     (answered by sluice's stack)
    admin:  curl http://127.0.0.1:9901/stats/prometheus | grep sluice_stack

MSG
    target/release/sluice -c examples/tap.yaml
    ;;
  dpdk)
    cargo build --release --bin sluice -p sluice-dataplane --features dpdk
    scripts/tap-topology.sh up dpdk
    web_server 9080 10.99.0.1 "hello from the host, through sluice in DPDK mode"
    trap 'kill $upstream 2>/dev/null; rm -rf "$www"; scripts/tap-topology.sh down' EXIT
    cat <<MSG

  sluice is starting with examples/dpdk.yaml (DPDK's net_tap as the port, sluice0; the stack
  owns 10.99.0.2 and is polled on CPU 1):
    proxy:  ip netns exec sluice-clients curl http://10.99.0.2:8080/
    ping:   ip netns exec sluice-clients ping -c 2 10.99.0.2     (answered by sluice's stack)
    admin:  curl http://127.0.0.1:9901/stats/prometheus | grep sluice_stack

MSG
    target/release/sluice -c examples/dpdk.yaml
    ;;
  xds)
    cargo build --release --bin sluice --bin sluice-control
    web_server 8080 127.0.0.1 "hello from the upstream, through a listener sluice got over xDS"
    run=$(mktemp -d)
    .tools/venv/bin/python tests/xds/ads_server.py --port 18000 --control-port 18001 \
      --snapshot examples/xds-resources.json > "$run/ads.out" &
    ads=$!
    trap 'kill $upstream $ads ${control:-} ${dataplane:-} 2>/dev/null; rm -rf "$www" "$run"' EXIT
    # Each waits for the readiness signal of the one before: the server's "xds PORT" line, the
    # dataplane's admin address file.
    until grep -q '^xds ' "$run/ads.out" 2>/dev/null; do kill -0 $ads; sleep 0.1; done
    target/release/sluice -c examples/xds.yaml --control-socket "$run/sluice.sock" \
      --admin-address-path "$run/admin" &
    dataplane=$!
    until [ -s "$run/admin" ]; do kill -0 $dataplane; sleep 0.1; done
    target/release/sluice-control xds -c examples/xds.yaml --dataplane "$run/sluice.sock" &
    control=$!
    cat <<MSG

  sluice is running with examples/xds.yaml; sluice-control got its listener and cluster from
  the ADS server on 127.0.0.1:18000 (resources: examples/xds-resources.json):
    proxy:   curl http://127.0.0.1:10000/
    xDS:     curl http://127.0.0.1:9901/config_dump   (dynamic_resources, with versions)
             curl -s http://127.0.0.1:9901/stats/prometheus | grep sluice_xds
    update:  edit examples/xds-resources.json, then send it as version 2:
             (printf '{"cmd":"set","version":"2","resources":'; tr -d '\n' < examples/xds-resources.json; echo '}') | nc -q1 127.0.0.1 18001

MSG
    wait $dataplane
    ;;
  *) echo "usage: $0 [tcp|bolt|tap|dpdk|xds]" >&2; exit 2 ;;
esac
