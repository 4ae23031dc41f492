#!/usr/bin/env python3
"""The `http` benchmark: small responses from a fast upstream (nginx) through each HTTP proxy.

Loads (each proxy in turn, runs interleaved so drift hits all alike):
  h1-50, h1-500   HTTP/1.1 keep-alive, wrk with 50 and 500 connections
  h2              HTTP/2 (h2c), h2load, 10 connections x 100 concurrent streams
  grpc            gRPC unary (h2c, 5-byte message, trailers), h2load, 10 x 100
Proxies: sluice and Envoy 1.40 on the same connection-manager config; nginx (HTTP/1.1, h2c in
front of an HTTP/1.1 upstream) and haproxy (HTTP/1.1 and h2) where they speak the load's
protocol. Each proxy is pinned to the proxy CPU with one worker; nginx as the upstream and the
load generator share the other CPU. Per run: requests per second, p50/p99 latency (wrk's, or
from h2load's per-request log) and the proxy's CPU time per request from /proc.

Then memory: the RSS each of sluice and Envoy gains per idle HTTP/2 connection (1,000 of them)
and per open stream (1,000 streams whose requests are still arriving).
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from common import (bench_arguments, cpu_split, free_port, machine, stop_all, wait_port, built,
                    write_markdown)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def hcm_config(listen, admin, h1_port, h2_port, envoy):
    """The same file for sluice and Envoy: /grpc.* to the h2c upstream, the rest to HTTP/1.1;
    Envoy's default circuit breakers raised so that neither proxy queues at 1,024."""
    def cluster(name, port, h2):
        c = {"name": name, "type": "STATIC", "connect_timeout": "1s",
             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                 {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
        if h2:
            c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
        return c
    doc = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": HCM, "stat_prefix": "bench",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/grpc."}, "route": {"cluster": "h2"}},
                        {"match": {"prefix": "/"}, "route": {"cluster": "h1"}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}],
            "clusters": [cluster("h1", h1_port, False), cluster("h2", h2_port, True)],
        },
    }
    # Envoy's defaults cap a cluster at 1,024 connections / pending / requests (sluice has no
    # circuit breakers yet, and refuses the field rather than ignore it).
    for c in doc["static_resources"]["clusters"] if envoy else []:
        c["circuit_breakers"] = {"thresholds": [{"max_connections": 100000, "max_pending_requests": 100000,
                                                 "max_requests": 100000}]}
    return json.dumps(doc)


def nginx_upstream(tmp, cpu):
    h1, h2 = free_port(), free_port()
    conf = f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/up.pid;
error_log {tmp}/up.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  http2_max_concurrent_streams 1000;
  client_body_temp_path {tmp}/ub;
  server {{
    listen 127.0.0.1:{h1} backlog=4096;
    listen 127.0.0.1:{h2} http2 backlog=4096;
    location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
    location /grpc.Bench/ {{
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      return 200 "\\0\\0\\0\\0\\0";
    }}
  }}
}}
"""
    path = os.path.join(tmp, "up.conf")
    open(path, "w").write(conf)
    p = subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-c", path, "-p", tmp])
    wait_port(h1, p, "nginx upstream")
    wait_port(h2, p, "nginx upstream")
    return p, h1, h2


def nginx_proxy(tmp, cpu, h1_up):
    port, port2 = free_port(), free_port()
    conf = f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/px.pid;
error_log {tmp}/px.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  http2_max_concurrent_streams 1000;
  client_body_temp_path {tmp}/pb;
  proxy_temp_path {tmp}/pp;
  upstream up {{ server 127.0.0.1:{h1_up}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    listen 127.0.0.1:{port2} http2 backlog=4096;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""
    path = os.path.join(tmp, "px.conf")
    open(path, "w").write(conf)
    p = subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-c", path, "-p", tmp])
    return p, port, port2


def haproxy_proxy(tmp, cpu, h1_up, h2_up):
    """haproxy with an HTTP/1.1 frontend and an h2c one (haproxy takes them on separate binds)."""
    port = free_port()
    path = os.path.join(tmp, "haproxy.cfg")
    port_h1 = free_port()
    open(path, "w").write(f"""global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend h1
  bind 127.0.0.1:{port_h1}
  default_backend up
frontend h2
  bind 127.0.0.1:{port} proto h2
  default_backend up2
backend up
  server s1 127.0.0.1:{h1_up}
backend up2
  server s1 127.0.0.1:{h2_up} proto h2
""")
    p = subprocess.Popen(["taskset", "-c", str(cpu), "haproxy", "-db", "-f", path],
                         stdout=subprocess.DEVNULL)
    return p, port_h1, port


def wrk(args, port, conns):
    cmd = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{conns}", f"-d{args.seconds}s",
           "--latency", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or not total:
        raise RuntimeError(f"wrk through {port}: {out[-800:]}")
    def pct(p):
        v = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not v:
            return float("nan")
        return float(v.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[v.group(2)]
    return {"rps": float(m.group(1)), "n": int(total.group(1)), "p50": pct(50), "p99": pct(99),
            "errors": int(errors.group(1)) if errors else 0}


def h2load(args, port, tmp, grpc):
    log = os.path.join(tmp, "h2load.log")
    cmd = ["taskset", "-c", str(args.load_cpu), "h2load", "-c", "10", "-m", "100", "-D", str(args.seconds),
           "--log-file", log]
    path = "/"
    if grpc:
        body = os.path.join(tmp, "grpc.bin")
        open(body, "wb").write(b"\0\0\0\0\0")
        cmd += ["-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"]
        path = "/grpc.Bench/Call"
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if not m or not ok:
        raise RuntimeError(f"h2load through {port}: {out[-800:]}")
    times = []
    for line in open(log):
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            times.append(int(parts[2]) / 1000.0)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))] if times else float("nan")
    n = int(ok.group(1))
    return {"rps": float(m.group(2)), "n": n, "p50": q(0.5), "p99": q(0.99),
            "errors": max(0, n - int(codes.group(1))) if codes else n}


H2_HOLD = r'''
import socket, sys, time, h2.connection, h2.config
port, conns, streams = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    socks.append((s, c))
s, c = socks[0] if socks else (None, None)
if streams:
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    # The server's SETTINGS first: they say how many streams it takes.
    got = False
    while not got:
        for e in c.receive_data(s.recv(65536)):
            got = got or type(e).__name__ == "RemoteSettingsChanged"
        s.sendall(c.data_to_send())
    for i in range(streams):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "POST"), (":path", "/hold"), (":authority", "b"), (":scheme", "http")])
    s.sendall(c.data_to_send())
print("held", flush=True)
time.sleep(3600)
'''


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(args, tmp, h1_up, h2_up):
    """RSS gained per idle HTTP/2 connection and per open stream, for sluice and Envoy, each
    measured on a freshly started proxy (memory freed by earlier loads would hide growth)."""
    py = os.path.join(args.root, ".tools/venv/bin/python")
    script = os.path.join(tmp, "hold.py")
    open(script, "w").write(H2_HOLD)
    out = {}
    for name in ("sluice", "envoy"):
        for what, conns, streams in (("connection", 1000, 0), ("stream", 0, 1000)):
            p, port = start_hcm(args, tmp, name, h1_up, h2_up)
            try:
                time.sleep(0.5)
                base = rss_kib(p.pid)
                h = subprocess.Popen(["taskset", "-c", str(args.load_cpu), py, script, str(port), str(conns),
                                      str(streams)], stdout=subprocess.PIPE, text=True)
                h.stdout.readline()
                time.sleep(1.0)
                grown = rss_kib(p.pid) - base
                h.kill()
                h.wait()
            finally:
                stop_all([p], None)
            out[(name, what)] = grown * 1024 / max(conns, streams)
            print(f"memory {name:8s} per {what}: {out[(name, what)] / 1024:.1f} KiB", flush=True)
    return out


def start_hcm(args, tmp, name, h1_up, h2_up):
    """sluice or Envoy on the benchmark's connection-manager config, pinned to the proxy CPU."""
    pin = ["taskset", "-c", str(args.proxy_cpu)]
    port = free_port()
    path = os.path.join(tmp, f"{name}.yaml")
    open(path, "w").write(hcm_config(port, free_port(), h1_up, h2_up, name == "envoy"))
    if name == "envoy":
        global _base_id
        _base_id += 1
        cmd = pin + [args.envoy, "-c", path, "--concurrency", "1", "-l", "error",
                     "--base-id", str((os.getpid() + _base_id) % 60000)]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    else:
        p = subprocess.Popen(pin + [args.sluice, "-c", path, "--concurrency", "1", "-l", "warning"])
    wait_port(port, p, name)
    return p, port


_base_id = 0


def main():
    ap = bench_arguments("h1-50,h1-500,h2,grpc")
    ap.add_argument("--proxies", default="sluice,envoy,nginx,haproxy")
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))
    tmp = tempfile.mkdtemp(prefix="sluice-bench-http-")
    pin = ["taskset", "-c", str(args.proxy_cpu)]
    procs = []
    proxies = []  # (name, {"h1": port, "h2": port}, Popen)
    try:
        up, h1_up, h2_up = nginx_upstream(tmp, args.load_cpu)
        procs.append(up)
        want = args.proxies.split(",")
        for name in ("sluice", "envoy"):
            if name in want:
                p, port = start_hcm(args, tmp, name, h1_up, h2_up)
                procs.append(p)
                proxies.append((name, {"h1": port, "h2": port, "grpc": port}, p))
        if "nginx" in want and shutil.which("nginx"):
            p, port, port2 = nginx_proxy(tmp, args.proxy_cpu, h1_up)
            procs.append(p)
            wait_port(port, p, "nginx")
            proxies.append(("nginx", {"h1": port, "h2": port2}, p))
        if "haproxy" in want and shutil.which("haproxy"):
            p, port_h1, port_h2 = haproxy_proxy(tmp, args.proxy_cpu, h1_up, h2_up)
            procs.append(p)
            wait_port(port_h1, p, "haproxy")
            proxies.append(("haproxy", {"h1": port_h1, "h2": port_h2}, p))
        loads = args.parts.split(",")
        results = {}
        for run in range(args.runs):
            for load in loads:
                for name, ports, p in proxies:
                    key = "grpc" if load == "grpc" else ("h2" if load == "h2" else "h1")
                    if key not in ports:
                        continue
                    before = cpu_split(p.pid)
                    if load.startswith("h1-"):
                        r = wrk(args, ports["h1"], int(load.split("-")[1]))
                    else:
                        r = h2load(args, ports[key], tmp, load == "grpc")
                    after = cpu_split(p.pid)
                    per = 1e6 / max(r["n"], 1)
                    r["user_us"] = (after[0] - before[0]) * per
                    r["sys_us"] = (after[1] - before[1]) * per
                    r["cpu_us"] = r["user_us"] + r["sys_us"]
                    results.setdefault((load, name), []).append(r)
                    print(f"run={run + 1} {load:7s} {name:8s} {r['rps']:9.0f} req/s  p50={r['p50']:.2f}ms "
                          f"p99={r['p99']:.2f}ms  cpu={r['cpu_us']:.1f}us/req (user {r['user_us']:.1f}, "
                          f"sys {r['sys_us']:.1f})  errors={r['errors']}", flush=True)
        for _, _, p in proxies:
            p.terminate()
        mem = memory(args, tmp, h1_up, h2_up)
    finally:
        stop_all(procs, tmp)

    lines = [f"### http — small responses from nginx through each HTTP proxy ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. Each proxy pinned to CPU {args.proxy_cpu} with one worker; the nginx "
             f"upstream and the load generator (wrk -t1, h2load -c10 -m100) on CPU {args.load_cpu}. "
             f"{args.runs} interleaved runs of {args.seconds} s; medians. CPU per request is the proxy's "
             "utime+stime from /proc over the run divided by the requests served. sluice and Envoy run "
             "the same connection-manager file (Envoy's circuit breakers raised); nginx and haproxy "
             "proxy the protocols they speak (nginx: HTTP/1.1 upstream only).", "",
             "| load | proxy | req/s | p50 ms | p99 ms | CPU µs/req | user + sys µs/req | req/s vs Envoy | CPU/req vs Envoy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for load in loads:
        base = results.get((load, "envoy"))
        b_rps = statistics.median(r["rps"] for r in base) if base else None
        b_cpu = statistics.median(r["cpu_us"] for r in base) if base else None
        for (l, name), runs in results.items():
            if l != load:
                continue
            rps = statistics.median(r["rps"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            user = statistics.median(r["user_us"] for r in runs)
            sys_ = statistics.median(r["sys_us"] for r in runs)
            errs = sum(r["errors"] for r in runs)
            vs = f"{rps / b_rps:.2f}×" if b_rps else "–"
            vc = f"{cpu / b_cpu:.2f}×" if b_cpu else "–"
            note = f" ({errs} non-2xx)" if errs else ""
            lines.append(f"| {load} | {name}{note} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | "
                         f"{user:.1f} + {sys_:.1f} | {vs} | {vc} |")
    lines += ["", "Memory (RSS gained, sluice vs Envoy):", "",
              "| | sluice | Envoy |", "|---|---:|---:|"]
    for what in ("connection", "stream"):
        s = mem.get(("sluice", what))
        e = mem.get(("envoy", what))
        if s is not None and e is not None:
            lines.append(f"| per idle HTTP/2 {what} | {s / 1024:.1f} KiB | {e / 1024:.1f} KiB |" if what == "connection"
                         else f"| per open HTTP/2 stream | {s / 1024:.1f} KiB | {e / 1024:.1f} KiB |")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "http", text)


if __name__ == "__main__":
    main()
