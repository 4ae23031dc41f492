#!/usr/bin/env python3
"""The `bolt` benchmark: SOFARPC/Bolt requests through each proxy.

sluice routes Bolt at L7 (rpc_proxy: decode, route by service, multiplexed upstream pool, id
rewrite, deadline) while Envoy 1.40 forwards the same bytes at L4 (tcp_proxy); sluice's own
tcp_proxy runs too, for reference. Each proxy runs with one worker pinned to the proxy core; the
load generator (boltbench load: many connections, pipelined requests, 1 KiB content, latency
histogram) and the Bolt echo server (boltbench echo) share the other core. Runs are interleaved
across proxies; medians are reported, with the proxy's CPU time per request from /proc.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from common import (stop_all, TCP_PROXY_FILTER, cpu_seconds, envoy_yaml, free_port, machine, start_proxy, built,
                    wait_port, write_markdown)

SERVICE = "com.alipay.sofa.bench.EchoService:1.0"


RPC_PROXY_FILTER = f"""      - name: sluice.filters.network.rpc_proxy
        typed_config:
          "@type": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: echo
              services: ["{SERVICE}"]
              routes:
              - route: {{cluster: upstream}}"""


def start_proxies(args, tmp, upstream, procs):
    want = args.proxies.split(",")
    builds = [("", None)] + ([("-base", args.baseline)] if args.baseline else [])
    for suffix, binary in builds:
        for name, filter_yaml in (("sluice", RPC_PROXY_FILTER), ("sluice-l4", TCP_PROXY_FILTER)):
            if name in want:
                port = free_port()
                yaml_text = envoy_yaml(port, upstream, free_port(), filter_yaml=filter_yaml)
                procs.append((name + suffix, port,
                              start_proxy(args, tmp, name + suffix, yaml_text, binary=binary)))
    if "envoy" in want:
        port = free_port()
        yaml_text = envoy_yaml(port, upstream, free_port())
        procs.append(("envoy", port, start_proxy(args, tmp, "envoy", yaml_text, envoy=True)))
    for name, port, p in procs:
        wait_port(port, p, name)


def load(args, port, connections, pipeline):
    cmd = ["taskset", "-c", str(args.load_cpu), args.boltbench, "load",
           "--target", f"127.0.0.1:{port}", "--connections", str(connections),
           "--pipeline", str(pipeline), "--seconds", str(args.seconds),
           "--payload", str(args.payload), "--service", SERVICE]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"boltbench load through port {port} failed: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--shapes", default="50x20,500x2",
                    help="load shapes CONNECTIONSxPIPELINE, comma list: deep pipelines on few "
                         "connections, and many clients with few requests each")
    ap.add_argument("--payload", type=int, default=1024)
    ap.add_argument("--proxies", default="sluice,envoy,sluice-l4")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--baseline", help="another sluice binary (an earlier build) to run beside "
                                       "this one, as sluice-base and sluice-l4-base")
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.boltbench = built(args.root, "boltbench")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))

    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    upstream = free_port()
    echo = subprocess.Popen(["taskset", "-c", str(args.load_cpu), args.boltbench, "echo",
                             "--listen", f"127.0.0.1:{upstream}"],
                            stdout=subprocess.PIPE, text=True)
    procs = []
    shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.shapes.split(",")]
    results = {}  # (shape, proxy) -> list of (load result, cpu seconds)
    try:
        line = echo.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError(f"boltbench echo did not start: {line!r}")
        start_proxies(args, tmp, upstream, procs)
        for shape in shapes:
            for run in range(args.runs):
                for name, port, p in procs:
                    before = cpu_seconds(p.pid)
                    r = load(args, port, *shape)
                    cpu = cpu_seconds(p.pid) - before
                    results.setdefault((shape, name), []).append((r, cpu))
                    total = r["requests"] * (1 + 1.0 / args.seconds)
                    print(f"{shape[0]}x{shape[1]} run={run + 1} {name:10s} {r['qps']:10.0f} req/s "
                          f"p50={r['p50_us']}us p99={r['p99_us']}us failed={r['failed']} "
                          f"cpu={cpu:.2f}s ({cpu / total * 1e6:.2f} us/req)", flush=True)
    finally:
        stop_all([p for _, _, p in procs] + [echo], tmp)

    def med(key, f):
        return statistics.median(f(r, c) for r, c in results[key])

    # The load runs warm-up (1 s) + measured seconds; CPU is read over the whole run, so scale
    # the measured request count to the whole run to get CPU per request.
    def per_req(r, c):
        return c / (r["requests"] * (1 + 1.0 / args.seconds)) * 1e6

    lines = [f"### bolt — Bolt requests through the proxy ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. Proxy pinned to CPU {args.proxy_cpu} with one worker; load "
             f"generator and Bolt echo server (boltbench) pinned to CPU {args.load_cpu}. "
             f"{args.payload} B content, {args.runs} interleaved runs of {args.seconds:g} s (after "
             "1 s warm-up) per proxy and load shape; medians. sluice routes at L7 (rpc_proxy: "
             "decode, route by service, one multiplexed upstream connection, id rewrite, "
             "deadlines); Envoy and sluice-l4 forward bytes at L4 (tcp_proxy, one upstream "
             "connection per client connection). CPU is the proxy's utime+stime from "
             "/proc/PID/stat.", ""]
    for shape in shapes:
        lines += [f"**{shape[0]} connections × {shape[1]} requests in flight each**", "",
                  "| proxy | req/s | p50 (µs) | p99 (µs) | CPU µs per request | req/s vs Envoy | p99 vs Envoy | CPU/req vs Envoy |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = (shape, "envoy") if (shape, "envoy") in results else None
        for (sh, name) in results:
            if sh != shape:
                continue
            key = (sh, name)
            qps = med(key, lambda r, c: r["qps"])
            p50 = med(key, lambda r, c: r["p50_us"])
            p99 = med(key, lambda r, c: r["p99_us"])
            cpu = med(key, per_req)
            if base:
                ratios = (f"{qps / med(base, lambda r, c: r['qps']):.2f}×",
                          f"{p99 / med(base, lambda r, c: r['p99_us']):.2f}×",
                          f"{cpu / med(base, per_req):.2f}×")
            else:
                ratios = ("–", "–", "–")
            lines.append(f"| {name} | {qps:,.0f} | {p50:.0f} | {p99:.0f} | {cpu:.2f} | "
                         f"{ratios[0]} | {ratios[1]} | {ratios[2]} |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "bolt", text)


if __name__ == "__main__":
    main()
