#!/usr/bin/env bash
# Side-by-side benchmarks: sluice next to Envoy 1.40 (and haproxy / nginx where they apply), each
# proxy pinned to its own core with one worker, the load generator on another core.
#
#   scripts/bench/run.sh tcp [--runs N] [--seconds S]
#   scripts/bench/run.sh bolt [--runs N] [--seconds S] [--shapes 50x20,500x2]
#   scripts/bench/run.sh stack [--runs N] [--seconds S] [--parts a,b,c] [--tap-mtus 1500,65521]
#   scripts/bench/run.sh dpdk [--runs N] [--seconds S] [--parts a,b]   (root; DPDK on vdevs)
#   scripts/bench/run.sh xds [--runs N] [--clusters N]   (clusters over ADS: time to apply, memory)
#   scripts/bench/run.sh hostile [--runs N] [--parts idle,noread,short,deadhost]   (bad clients' cost)
#   scripts/bench/run.sh http [--runs N] [--seconds S] [--parts h1-50,h1-500,h2,grpc]   (L7 HTTP)
#
# sluice is built in the `dist` profile (fat LTO, one codegen unit: what it is deployed as);
# SLUICE_PROFILE=release measures the test suite's build instead.
#
# Results (medians of the runs, and the proxy's CPU time per GB read from /proc) are printed and
# written into docs/benchmarks.md together with a description of the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scenario=${1:-}
[ -n "$scenario" ] || { echo "usage: $0 SCENARIO [--runs N] [--seconds S]   (scenarios: tcp, bolt, stack, dpdk, xds, hostile, http)" >&2; exit 2; }
shift
export SLUICE_PROFILE=${SLUICE_PROFILE:-dist}

case "$scenario" in
  tcp)
    "$root/scripts/setup/deps.sh" bench
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice)
    exec python3 "$here/tcp.py" --root "$root" "$@"
    ;;
  bolt)
    "$root/scripts/setup/deps.sh" bench
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice --bin boltbench)
    exec python3 "$here/bolt.py" --root "$root" "$@"
    ;;
  stack)
    "$root/scripts/setup/deps.sh" bench
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice --bin stackbench)
    exec python3 "$here/stack.py" --root "$root" "$@"
    ;;
  dpdk)
    "$root/scripts/setup/deps.sh" bench
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice --bin dpdkpeer \
      --features sluice-dataplane/dpdk,sluice-benchtools/dpdk)
    exec python3 "$here/dpdk.py" --root "$root" "$@"
    ;;
  xds)
    "$root/scripts/setup/deps.sh" test >/dev/null
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice --bin sluice-control)
    exec python3 "$here/xds.py" --root "$root" "$@"
    ;;
  hostile)
    "$root/scripts/setup/deps.sh" bench >/dev/null
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice)
    exec python3 "$here/hostile.py" --root "$root" "$@"
    ;;
  http)
    "$root/scripts/setup/deps.sh" bench >/dev/null
    (cd "$root" && cargo build --profile "$SLUICE_PROFILE" --bin sluice)
    exec python3 "$here/http_l7.py" --root "$root" "$@"
    ;;
  *) echo "unknown scenario '$scenario' (known: tcp, bolt, stack, dpdk, xds, hostile, http)" >&2; exit 2 ;;
esac
