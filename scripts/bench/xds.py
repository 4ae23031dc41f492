#!/usr/bin/env python3
"""The `xds` benchmark: N clusters (default 10,000), each an EDS cluster with its own endpoint,
plus a listener, delivered over ADS (state of the world) by the third-party test server
(tests/xds/ads_server.py) to sluice (dataplane + sluice-control) and to Envoy 1.40.

For each proxy, in turn: it starts with its xDS bootstrap against a server holding an empty
snapshot and syncs that; its memory is read (RSS from /proc, for sluice both processes); then the
server is given the N clusters and the time until the proxy serves all of them is measured (sluice:
its /stats say every cluster is active and the listener serves; Envoy: cluster_manager counts
and the listener serves); then memory again. Memory per cluster = (RSS after - RSS before) / N.
Each proxy is pinned to the proxy core (sluice's two processes share it), the ADS server runs on
the other core. Several runs; medians.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import bench_arguments, cpu_seconds, free_port, machine, stop_all, write_markdown, built

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Ads:
    def __init__(self, args, tmp):
        script = os.path.join(args.root, "tests/xds/ads_server.py")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(args.load_cpu), args.python, script],
            stdout=subprocess.PIPE, text=True)
        words = self.proc.stdout.readline().split()
        if len(words) != 4:
            sys.exit("ads_server.py did not start")
        self.port, self.control = int(words[1]), int(words[3])

    def command(self, cmd):
        with socket.create_connection(("127.0.0.1", self.control)) as s:
            f = s.makefile("rw")
            f.write(json.dumps(cmd) + "\n")
            f.flush()
            answer = json.loads(f.readline())
        if not answer.get("ok"):
            sys.exit(f"ads_server.py: {answer}")
        return answer

    def set(self, version, resources):
        self.command({"cmd": "set", "node": "*", "version": version, "resources": resources})


def resources(n, listen_port, upstream_port):
    clusters, endpoints = [], []
    for i in range(n):
        name = f"c{i:05d}"
        clusters.append({"name": name, "type": "EDS", "connect_timeout": "1s",
                         "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}})
        # Distinct endpoints: 127.x.y.z, the same upstream port.
        ip = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{(i & 255) or 1}"
        endpoints.append({"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": ip, "port_value": upstream_port}}}}]}]})
    listener = {"name": "front", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": TCP_PROXY, "stat_prefix": "front", "cluster": "c00000"}}]}]}
    return {"clusters": clusters, "endpoints": endpoints, "listeners": [listener]}


def bootstrap(node, ads_port, admin, envoy):
    h2 = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
""" if envoy else ""
    return f"""node: {{id: {node}, cluster: bench}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
{h2}    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {ads_port}}}}}}}}}]}}]
"""


def stats(admin):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def stat_value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " ") or line.startswith(series + ": "):
            return int(float(line.replace(":", " ").split()[-1]))
    return None


def wait(cond, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    sys.exit(f"timed out waiting for {what}")


def serves(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start(args, tmp, name, ads, admin):
    """Starts one proxy; returns (pids, ready(n) predicate)."""
    pin = ["taskset", "-c", str(args.proxy_cpu)]
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(bootstrap(name, ads.port, admin, name == "envoy"))
    if name == "envoy":
        p = subprocess.Popen(pin + [args.envoy, "-c", path, "--concurrency", "1", "-l", "error",
                                    "--base-id", str(os.getpid() % 60000)], stdout=subprocess.DEVNULL)
        procs = [p]

        def synced(n):
            t = stats(admin)
            # Envoy counts the static xds cluster too.
            return (stat_value(t, "cluster_manager.active_clusters") == n + 1
                    and stat_value(t, "cluster_manager.warming_clusters") == 0
                    and stat_value(t, "listener_manager.total_listeners_active") == (1 if n else 0))
    else:
        socket_path = os.path.join(tmp, "control.sock")
        dp = subprocess.Popen(pin + [args.sluice, "-c", path, "--concurrency", "1", "-l", "warning",
                                     "--control-socket", socket_path])
        wait(lambda: os.path.exists(socket_path), "sluice's control socket", 20)
        cp = subprocess.Popen(pin + [args.control, "xds", "-c", path, "--dataplane", socket_path],
                              env=dict(os.environ, SLUICE_LOG="warn"))
        procs = [dp, cp]

        def synced(n):
            t = stats(admin)
            if stat_value(t, "sluice_xds_initialized") != 1:
                return False
            active = stat_value(t, 'sluice_xds_resources{type="cds",state="active"}')
            warming = stat_value(t, 'sluice_xds_resources{type="cds",state="warming"}')
            return active == n and warming == 0
    return procs, synced


def one_run(args, tmp, name, ads, n):
    ads.set("empty", {"clusters": [], "endpoints": [], "listeners": []})
    admin, listen = free_port(), free_port()
    procs, synced = start(args, tmp, name, ads, admin)
    try:
        wait(lambda: synced(0), f"{name} to sync the empty snapshot", 30)
        time.sleep(1)  # let allocators settle after start-up
        before = sum(rss_kib(p.pid) for p in procs)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        t0 = time.time()
        ads.set(f"n{n}", args.snapshot(listen))
        wait(lambda: synced(n) and serves(listen), f"{name} to apply {n} clusters", 600)
        elapsed = time.time() - t0
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        time.sleep(1)
        after = [rss_kib(p.pid) for p in procs]
        return {"seconds": elapsed, "cpu": cpu, "before_kib": before, "after_kib": sum(after),
                "per_process_kib": after,
                "per_cluster_bytes": (sum(after) - before) * 1024 / n}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = bench_arguments("sluice,envoy")
    ap.add_argument("--clusters", type=int, default=10000)
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.control = built(args.root, "sluice-control")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))
    args.python = os.path.join(args.root, ".tools/venv/bin/python")
    n = args.clusters
    upstream = free_port()
    args.snapshot = lambda listen: resources(n, listen, upstream)
    tmp = tempfile.mkdtemp(prefix="sluice-bench-xds-")
    ads = Ads(args, tmp)
    results = {name: [] for name in args.parts.split(",")}
    try:
        for run in range(args.runs):
            for name in results:
                r = one_run(args, tmp, name, ads, n)
                print(f"run {run + 1} {name}: {r['seconds']:.2f} s to apply, {r['cpu']:.2f} CPU-s, "
                      f"{r['per_cluster_bytes'] / 1024:.2f} KiB per cluster "
                      f"(RSS {r['before_kib'] / 1024:.1f} -> {r['after_kib'] / 1024:.1f} MiB, "
                      f"per process {[round(k / 1024, 1) for k in r['per_process_kib']]} MiB)", flush=True)
                results[name].append(r)
    finally:
        ads.proc.terminate()
        stop_all([], tmp)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "cpu", "per_cluster_bytes", "after_kib")}
           for name, rs in results.items()}
    lines = [f"### xds: {n} EDS clusters (one endpoint each) and a listener over ADS",
             "",
             f"Machine: {machine()}. Each proxy pinned to CPU {args.proxy_cpu} with one worker (sluice's "
             f"dataplane and sluice-control share it); the ADS server (tests/xds/ads_server.py, envoy-data-plane "
             f"+ grpclib) on CPU {args.load_cpu}. Medians of {args.runs} runs; memory is RSS from /proc after "
             f"the update minus before it (sluice: both processes), divided by {n}.",
             "",
             "| proxy | time to apply | CPU-s to apply | memory per cluster | RSS after |",
             "|---|---:|---:|---:|---:|"]
    for name, m in med.items():
        lines.append(f"| {name} | {m['seconds']:.2f} s | {m['cpu']:.2f} | {m['per_cluster_bytes'] / 1024:.2f} KiB "
                     f"| {m['after_kib'] / 1024:.1f} MiB |")
    if "sluice" in med and "envoy" in med:
        ratio = med["sluice"]["per_cluster_bytes"] / med["envoy"]["per_cluster_bytes"]
        lines += ["", f"sluice uses {ratio:.2f}× Envoy's memory per cluster (target: at most 0.25×); "
                      f"it applies in {med['sluice']['seconds'] / med['envoy']['seconds']:.2f}× Envoy's time."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "xds", text)


if __name__ == "__main__":
    main()
