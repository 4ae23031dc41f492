#!/usr/bin/env python3
"""The `tcp` benchmark: an iperf3 stream through each L4 proxy.

Every proxy (sluice, Envoy 1.40, haproxy, nginx stream) runs at once on its own port, pinned to
the same proxy core with one worker; iperf3 client and server are pinned to the other core. Runs
are interleaved (run 1 of every proxy, then run 2, ...) so slow drift of a noisy machine hits all
proxies alike. For each run: bytes received by the iperf3 server, throughput, and the proxy's CPU
time (utime + stime of all its threads, from /proc/PID/stat) spent during the run.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import (stop_all, cpu_seconds, envoy_yaml, free_port, machine, start_proxy, wait_port, built,
                    write_markdown)


def start_proxies(args, tmp, upstream, procs):
    """Fills procs with (name, port, Popen) as they start (so a failure still stops those that
    did)."""
    pin = ["taskset", "-c", str(args.proxy_cpu)]
    want = args.proxies.split(",")
    builds = [("", None)] + ([("-base", args.baseline)] if args.baseline else [])
    for suffix, binary in builds:
        for name, extra in (("sluice", ""), ("sluice-copy", "sluice:\n  io: {splice: false}\n")):
            if name in want:
                port = free_port()
                yaml_text = envoy_yaml(port, upstream, free_port(), extra)
                procs.append((name + suffix, port,
                              start_proxy(args, tmp, name + suffix, yaml_text, binary=binary)))
    if "envoy" in want:
        port = free_port()
        yaml_text = envoy_yaml(port, upstream, free_port())
        procs.append(("envoy", port, start_proxy(args, tmp, "envoy", yaml_text, envoy=True)))
    if "haproxy" in want and shutil.which("haproxy"):
        port = free_port()
        path = os.path.join(tmp, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
listen bench
  bind 127.0.0.1:{port}
  server up 127.0.0.1:{upstream}
""")
        p = subprocess.Popen(pin + ["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL)
        procs.append(("haproxy", port, p))
    if "nginx" in want and shutil.which("nginx"):
        port = free_port()
        path = os.path.join(tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections 10000; }}
stream {{
  server {{
    listen 127.0.0.1:{port};
    proxy_pass 127.0.0.1:{upstream};
  }}
}}
""")
        p = subprocess.Popen(pin + ["nginx", "-c", path, "-p", tmp])
        procs.append(("nginx", port, p))
    for name, port, p in procs:
        wait_port(port, p, name)


def iperf(args, port, streams):
    cmd = ["taskset", "-c", str(args.load_cpu), "iperf3", "-c", "127.0.0.1", "-p", str(port),
           "-t", str(args.seconds), "-P", str(streams), "-J"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"iperf3 through port {port} failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    end = json.loads(out.stdout)["end"]
    return end["sum_received"]["bytes"], end["sum_received"]["bits_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--streams", default="1,4", help="iperf3 parallel streams per load, comma list")
    ap.add_argument("--proxies", default="sluice,sluice-copy,envoy,haproxy,nginx")
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--baseline", help="another sluice binary (an earlier build) to run beside "
                                       "this one, as sluice-base and sluice-copy-base")
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))

    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    upstream = free_port()
    server = subprocess.Popen(["taskset", "-c", str(args.load_cpu), "iperf3", "-s", "-p", str(upstream)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = []
    try:
        start_proxies(args, tmp, upstream, procs)
        wait_port(upstream, server, "iperf3 server")
        results = {}  # (streams, proxy) -> list of (bytes, bps, cpu)
        for streams in [int(s) for s in args.streams.split(",")]:
            for run in range(args.runs):
                for name, port, p in procs:
                    before = cpu_seconds(p.pid)
                    nbytes, bps = iperf(args, port, streams)
                    cpu = cpu_seconds(p.pid) - before
                    results.setdefault((streams, name), []).append((nbytes, bps, cpu))
                    print(f"streams={streams} run={run + 1} {name:12s} {bps / 1e9:6.2f} Gbit/s "
                          f"cpu={cpu:5.2f}s  {cpu / (nbytes / 1e9):.3f} cpu-s/GB", flush=True)
    finally:
        stop_all([p for _, _, p in procs] + [server], tmp)

    lines = [f"### tcp — iperf3 through an L4 proxy ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. Proxy pinned to CPU {args.proxy_cpu} with one worker; iperf3 "
             f"client and server pinned to CPU {args.load_cpu}. {args.runs} interleaved runs of "
             f"{args.seconds} s per proxy and load; medians. CPU is the proxy's utime+stime from "
             "/proc/PID/stat, which includes the kernel's TCP work done in the proxy's context.", ""]
    for streams in sorted({s for s, _ in results}):
        base = results.get((streams, "envoy"))
        base_cpu = statistics.median(c / (b / 1e9) for b, _, c in base) if base else None
        base_bps = statistics.median(bps for _, bps, _ in base) if base else None
        lines += [f"**{streams} stream{'s' if streams > 1 else ''}**", "",
                  "| proxy | throughput (Gbit/s) | CPU s per GB | throughput vs Envoy | CPU/GB vs Envoy |",
                  "|---|---:|---:|---:|---:|"]
        for (s, name), runs in results.items():
            if s != streams:
                continue
            bps = statistics.median(r[1] for r in runs)
            cpg = statistics.median(c / (b / 1e9) for b, _, c in runs)
            vs_t = f"{bps / base_bps:.2f}×" if base_bps else "–"
            vs_c = f"{cpg / base_cpu:.2f}×" if base_cpu else "–"
            lines.append(f"| {name} | {bps / 1e9:.2f} | {cpg:.3f} | {vs_t} | {vs_c} |")
        lines.append("")
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "tcp", text)


if __name__ == "__main__":
    main()
