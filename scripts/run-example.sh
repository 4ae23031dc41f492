#!/usr/bin/env bash
# sluice's main job on the example config: a TCP proxy on 127.0.0.1:10000 in front of a small
# web server on 127.0.0.1:8080, admin API on 127.0.0.1:9901. Builds sluice first; Ctrl-C stops
# everything.
#   scripts/run-example.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup/deps.sh run >/dev/null
cargo build --release --bin sluice
www=$(mktemp -d)
echo "hello from the upstream behind sluice" > "$www/index.html"
python3 -m http.server 8080 --bind 127.0.0.1 --directory "$www" >/dev/null 2>&1 &
upstream=$!
trap 'kill $upstream 2>/dev/null; rm -rf "$www"' EXIT
cat <<MSG

  sluice is starting with examples/envoy.yaml:
    proxy:  curl http://127.0.0.1:10000/      (TCP proxy -> web server on 127.0.0.1:8080)
    admin:  curl http://127.0.0.1:9901/stats  (also /ready /clusters /listeners /config_dump)
    reload: edit examples/envoy.yaml, then   kill -HUP \$(pgrep -x sluice)

MSG
target/release/sluice -c examples/envoy.yaml
