#!/usr/bin/env python3
"""The `dpdk` benchmark: sluice's DPDK mode on virtual devices, beside TAP mode, kernel mode and
Envoy 1.40. Virtual devices are not NICs: net_tap is a TAP underneath (a system call per
burst, the kernel's TCP on the other side doing its usual work), and net_memif copies frames
through shared memory. What they show is the cost of sluice's own path (poll loop, stack,
proxy) per frame and per byte, not what a 100G NIC would carry.

(a) iperf3 through a TCP proxy inside one network namespace: sluice in DPDK mode on net_tap,
    sluice in TAP mode, sluice on kernel sockets, Envoy. Throughput, the proxy's CPU time per
    GB (utime + stime from /proc) and, for the userspace stacks, CPU time per frame.
(b) No kernel anywhere: DPDK-mode sluice on net_memif, proxying for `dpdkpeer` (a DPDK process
    with its own stack: the clients and the echo upstream) over the other end of the memif.
    Connections each send and get back a payload through the proxy; throughput of proxied
    payload, sluice's CPU per GB and per frame, with 1 and 2 queues/workers. sluice backs off
    when idle here, so time spent waiting for the peer (one core for 128 connections, its
    echo service and the RSS steering) is mostly not counted as sluice's work.

Needs root (TAP devices, namespaces, DPDK).
"""
import json
import os
import subprocess
import tempfile
import time

from common import bench_arguments, cpu_seconds, wait_ready, machine, stop_all, write_markdown, built
from stack import median, part_c, stack_frames


def memif_yaml(sock, queues, cpus, admin):
    bindings = ", ".join(f"{{lcore: {c}, port: wire, queue: {q}}}" for q, c in enumerate(cpus))
    return f"""sluice:
  io:
    backend: dpdk
    dpdk:
      eal: {{lcores: [{", ".join(str(c) for c in sorted(set(cpus)))}], no_huge_mb: 1024, in_memory: true, vdevs: ["net_memif0,role=server,socket={sock},rsize=14"]}}
      ports:
      - name: wire
        device: net_memif0
        rx_queues: {queues}
        tx_queues: {queues}
        addresses: ["10.88.0.2/24"]
      queues: [{bindings}]
      mempool: {{mbufs: 16383}}
      idle: {{policy: backoff, max_sleep: 0.0002s}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: front
    address: {{socket_address: {{address: 10.88.0.2, port_value: 8000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: front
          cluster: peer
  clusters:
  - name: peer
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: peer
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 10.88.0.1, port_value: 9000}}}}}}
"""


def part_b(args):
    lines = [f"**(b) DPDK mode over net_memif, no kernel on the path** (dpdkpeer on the other "
             f"end: 64 connections each sending {args.memif_bytes // 1000} kB and reading it back through the proxy; "
             "payload counted once per direction)", "",
             "| queues / workers | Gbit/s of proxied payload | sluice CPU s per GB | "
             "sluice CPU per frame |", "|---|---:|---:|---:|"]
    layouts = [(1, [args.proxy_cpu]), (2, [args.proxy_cpu, args.load_cpu])]
    for queues, cpus in layouts:
        runs = []
        for run in range(args.runs):
            tmp = tempfile.mkdtemp(prefix="sluice-bench-memif-")
            sock = os.path.join(tmp, "memif.sock")
            path = os.path.join(tmp, "s.yaml")
            open(path, "w").write(memif_yaml(sock, queues, cpus, 9913))
            sluice = subprocess.Popen([args.sluice_dpdk, "-c", path, "-l", "warning"],
                                      stdout=subprocess.DEVNULL)
            try:
                wait_ready(9913, sluice, "DPDK-mode sluice")
                frames, before = stack_frames(9913), cpu_seconds(sluice.pid)
                out = subprocess.run(
                    [args.dpdkpeer, "--vdev", f"net_memif0,role=client,socket={sock},rsize=14",
                     "--queues", str(queues), "--lcore", str(args.load_cpu),
                     "--address", "10.88.0.1/24", "--target", "10.88.0.2:8000",
                     "--connections", "64", "--bytes", str(args.memif_bytes), "--timeout", "60",
                     # With one worker the peer has a core to itself and polls; with two it
                     # shares one with the second worker and must nap when idle.
                     *(["--poll"] if queues == 1 else [])],
                    capture_output=True, text=True, check=True)
                cpu = cpu_seconds(sluice.pid) - before
                frames = stack_frames(9913) - frames
                r = json.loads(out.stdout)
                if r["failed"]:
                    raise RuntimeError(f"dpdkpeer: {r}")
                # Each payload byte crosses the proxy twice (to the echo and back).
                moved = 2 * r["bytes"]
                runs.append((moved * 8 / r["seconds"], cpu / (moved / 1e9), cpu / frames))
                print(f"(b) queues={queues} run={run + 1} {runs[-1][0] / 1e9:.2f} Gbit/s "
                      f"{runs[-1][1]:.3f} cpu-s/GB {runs[-1][2] * 1e9:.0f} ns/frame", flush=True)
            finally:
                stop_all([sluice], tmp)
        lines.append(f"| {queues} | {median(r[0] for r in runs) / 1e9:.2f} | "
                     f"{median(r[1] for r in runs):.3f} | {median(r[2] for r in runs) * 1e9:.0f} ns |")
    return lines + [""]


def main():
    ap = bench_arguments("a,b")
    ap.add_argument("--memif-bytes", type=int, default=1_000_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the dpdk benchmark needs root (TAP devices, namespaces, DPDK)")
    args.sluice = built(args.root, "sluice")
    args.sluice_dpdk = args.sluice
    args.dpdkpeer = built(args.root, "dpdkpeer")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))
    args.tap_mtu = 1500
    lines = [f"### dpdk — DPDK mode on virtual devices ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. {args.runs} runs per measurement; medians. Virtual devices "
             "are not NICs: net_tap is a TAP underneath (a system call per burst, with the "
             "kernel's receive work for it billed partly to sluice), net_memif copies frames "
             "through shared memory. The figures compare sluice's own path per frame and per "
             "byte across IO backends on this machine; they do not predict NIC throughput.", ""]
    parts = args.parts.split(",")
    if "a" in parts:
        lines += part_c(args, tempfile.mkdtemp(prefix="sluice-bench-"), dpdk=True)
    if "b" in parts:
        lines += part_b(args)
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "dpdk", text)


if __name__ == "__main__":
    main()
