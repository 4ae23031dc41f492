#!/usr/bin/env bash
# A laptop topology for TAP mode, and its teardown:
#
#   scripts/tap-topology.sh up      # then: sluice -c examples/tap.yaml
#   scripts/tap-topology.sh up dpdk # the same for DPDK mode: sluice -c examples/dpdk.yaml
#   scripts/tap-topology.sh down
#
#   host                                            namespace sluice-clients
#   ┌───────────────────────────────────────┐       ┌──────────────────────────┐
#   │ sluice0 (TAP) 10.99.0.1/24 ── sluice's │       │ slc-ns 10.98.0.2/24      │
#   │   own stack owns 10.99.0.2             │       │ default via 10.98.0.1    │
#   │ slc-host 10.98.0.1/24 ─────────────────┼─veth──┤ (curl, socat, iperf3 ... │
#   │ ip_forward on; upstreams listen on     │       │  as sluice's clients)    │
#   │ 10.99.0.1                              │       └──────────────────────────┘
#   └───────────────────────────────────────┘
#
# The TAP is made persistent here so sluice (which attaches to it by name) can start and stop
# without the host side losing its address. Needs root. Names and addresses can be changed with
# SLUICE_TAP, SLUICE_NS, SLUICE_VETH (prefix) in the environment; `down` removes exactly what
# `up` made and puts ip_forward back as it was.
set -euo pipefail
tap=${SLUICE_TAP:-sluice0}
ns=${SLUICE_NS:-sluice-clients}
veth=${SLUICE_VETH:-slc}
state=/run/sluice-topology-$tap.forward

[ "$(id -u)" = 0 ] || { echo "error: $0 needs root (it creates a TAP device and a network namespace)" >&2; exit 1; }
command -v ip >/dev/null || { echo "error: iproute2 (ip) is not installed: apt-get install iproute2" >&2; exit 1; }

up() {
  if ip link show "$tap" >/dev/null 2>&1 || ip netns list | grep -qw "$ns"; then
    echo "error: $tap or namespace $ns already exists; run: $0 down" >&2
    exit 1
  fi
  cat /proc/sys/net/ipv4/ip_forward > "$state"
  # DPDK's net_tap opens the device multi-queue, and attaches only to a TAP made that way.
  if [ "${mode:-}" = dpdk ]; then
    ip tuntap add dev "$tap" mode tap multi_queue
  else
    ip tuntap add dev "$tap" mode tap
  fi
  ip addr add 10.99.0.1/24 dev "$tap"
  ip link set "$tap" up
  ip netns add "$ns"
  ip link add "$veth-host" type veth peer name "$veth-ns"
  ip link set "$veth-ns" netns "$ns"
  ip addr add 10.98.0.1/24 dev "$veth-host"
  ip link set "$veth-host" up
  ip -n "$ns" addr add 10.98.0.2/24 dev "$veth-ns"
  ip -n "$ns" link set "$veth-ns" up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via 10.98.0.1
  echo 1 > /proc/sys/net/ipv4/ip_forward
  echo "TAP $tap (host side 10.99.0.1; sluice's stack is 10.99.0.2), clients in namespace $ns (10.98.0.2)."
  echo "next: sluice -c examples/tap.yaml   then: ip netns exec $ns curl http://10.99.0.2:8080/"
}

down() {
  ip netns del "$ns" 2>/dev/null || true      # takes slc-ns with it, and so its veth peer
  ip link del "$veth-host" 2>/dev/null || true
  ip link del "$tap" 2>/dev/null || true
  if [ -f "$state" ]; then
    cat "$state" > /proc/sys/net/ipv4/ip_forward
    rm -f "$state"
  fi
  echo "removed $tap, $veth-host and namespace $ns"
}

case "${1:-}" in
  up) mode=${2:-} up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
