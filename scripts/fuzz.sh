#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while (default 20 s each), starting from the seeds in
# fuzz/seeds/. Needs cargo-fuzz (installed here if missing); uses RUSTC_BOOTSTRAP so the stable
# toolchain accepts the sanitizer flags cargo fuzz passes.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "fuzzing $target for ${secs}s"
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$secs" -max_len=65536
done
