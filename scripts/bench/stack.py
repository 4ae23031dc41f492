#!/usr/bin/env python3
"""The `stack` benchmark: sluice's userspace TCP/IP stack.

(a) Stack to stack over the in-memory wire, one connection, one core doing both ends
    (`stackbench throughput`), at MTU 1500, 9000 and 65521.
(b) CPU time per frame with 100 and with 10,000 connections open (`stackbench packets`): the
    exchanges go to 100 of them while the rest sit idle, and, as a second reading, to all of
    them (random access over the whole flow table, which measures cache misses as much as work).
(c) A TCP proxy on the stack behind a TAP device (sluice --io tap) next to sluice on kernel
    sockets and Envoy 1.40, all proxying iperf3 inside one network namespace: throughput and the
    proxy's CPU time per GB (utime + stime from /proc). Needs root.

Each proxy is pinned to its own core; iperf3 client and server share the other.
"""
import json
import os
import statistics
import subprocess
import tempfile
import time

from common import bench_arguments, cpu_seconds, wait_ready, envoy_yaml, machine, stop_all, write_markdown, built

NS_IP, STACK_IP = "10.99.0.1", "10.99.0.2"
DPDK_NS_IP, DPDK_IP = "10.98.0.1", "10.98.0.2"


def stackbench(args, *cmd):
    out = subprocess.run(["taskset", "-c", str(args.proxy_cpu), args.stackbench, *cmd],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def median(xs):
    return statistics.median(xs)


def part_a(args):
    rows = []
    for mtu in (1500, 9000, 65521):
        runs = [stackbench(args, "throughput", "--mtu", str(mtu), "--seconds", str(args.seconds))
                for _ in range(args.runs)]
        g = median(r["gbit_per_cpu_second"] for r in runs)
        print(f"(a) mtu {mtu}: {g:.1f} Gbit/s per core", flush=True)
        rows.append(f"| {mtu} | {g:.1f} |")
    return ["**(a) stack to stack, in memory, one core for both ends**", "",
            "| MTU | Gbit/s of payload per CPU-second |", "|---:|---:|", *rows, ""]


def part_b(args):
    res = {}
    for active in ("100", "all"):
        for conns in (100, 10000):
            extra = [] if active == "all" else ["--active", active]
            runs = [stackbench(args, "packets", "--connections", str(conns), "--seconds",
                               str(args.seconds), *extra) for _ in range(args.runs)]
            res[(active, conns)] = runs
            print(f"(b) active={active} connections={conns}: "
                  f"{median(r['ns_per_frame'] for r in runs):.0f} ns/frame", flush=True)
    lines = ["**(b) CPU time per frame against open connections** (64-byte request/response, "
             "both stacks on one core; frames counted at both receivers)", "",
             "| exchanges go to | 100 open | 10,000 open | ratio |", "|---|---:|---:|---:|"]
    for active, label in (("100", "100 of them (the rest idle)"), ("all", "all of them, at random")):
        a = median(r["ns_per_frame"] for r in res[(active, 100)])
        b = median(r["ns_per_frame"] for r in res[(active, 10000)])
        lines.append(f"| {label} | {a:.0f} ns | {b:.0f} ns | {b / a:.2f}× |")
    r = res[("all", 10000)][0]
    lines += ["", f"Memory per connection (resident set growth per flow, 20,000 flows): "
              f"{r['kib_per_idle_flow']:.1f} KiB established and idle; "
              f"{r['kib_per_flow_after_exchanges']:.1f} KiB right after carrying data; "
              f"{r['kib_per_flow_after_quiet']:.1f} KiB once quiet for a few seconds "
              "(empty rings hand their pages back).", ""]
    return lines


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def proxy_yaml(listen_ip, port, upstream, section="", admin=0):
    """A tcp_proxy from listen_ip:port to the namespace's upstream, after a `sluice:` section."""
    return section + envoy_yaml(port, upstream, admin, listen_ip=listen_ip, upstream_ip=NS_IP)


def tap_section(tap, mtu):
    return (f"sluice:\n  io:\n    backend: tap\n    tap:\n      name: {tap}\n"
            f"      addresses: [\"{STACK_IP}/24\"]\n      mtu: {mtu}\n")


def dpdk_tap_section(iface, cpu, stack_ip):
    """DPDK mode on DPDK's net_tap vdev (a TAP underneath: read/write per frame burst), one
    worker on `cpu`. Idle rounds back off so the idle proxy does not starve the others that
    share its core while they are measured; under load it polls without pause."""
    return (f"sluice:\n  io:\n    backend: dpdk\n    dpdk:\n"
            f"      eal: {{lcores: [{cpu}], no_huge_mb: 512, in_memory: true, "
            f"vdevs: [\"net_tap0,iface={iface}\"]}}\n"
            f"      ports:\n      - name: wire\n        device: net_tap0\n"
            f"        addresses: [\"{stack_ip}/24\"]\n"
            f"      queues: [{{lcore: {cpu}, port: wire, queue: 0}}]\n"
            f"      idle: {{policy: backoff, max_sleep: 0.0002s}}\n")


def adopt(ns, iface, ip, proc, what, admin):
    """Waits until `proc` serves (its admin /ready answers; its TAP device `iface` is set up by
    then), then moves the device into `ns` with address `ip`."""
    wait_ready(admin, proc, what)
    sh("ip", "link", "set", iface, "netns", ns)
    sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", iface)
    sh("ip", "-n", ns, "link", "set", iface, "up")


def stack_frames(admin):
    """Frames the proxy's stack received and sent, from its /stats."""
    import urllib.request
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).read().decode()
    n = 0
    for line in body.splitlines():
        if line.startswith(("sluice_stack_rx_frames ", "sluice_stack_tx_frames ")):
            n += int(line.split()[1])
    return n


def part_c(args, tmp, dpdk=False):
    ns, tap = f"slbench{os.getpid() % 10000}", f"slbt{os.getpid() % 10000}"
    procs = []
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        inns = ["ip", "netns", "exec", ns]
        pin = ["taskset", "-c", str(args.proxy_cpu)]
        # sluice on its stack: the TAP is created in this namespace, then moved into `ns`.
        path = os.path.join(tmp, "tap.yaml")
        open(path, "w").write(proxy_yaml("0.0.0.0", 8080, 5201, tap_section(tap, args.tap_mtu),
                                         admin=9911))
        tapped = subprocess.Popen(pin + [args.sluice, "-c", path, "-l", "warning"])
        procs.append(("sluice (tap)", f"{STACK_IP}:8080", tapped, 9911))
        adopt(ns, tap, NS_IP, tapped, "sluice (tap)", 9911)
        if dpdk:
            # DPDK mode through a second link into the same namespace, its own subnet.
            iface = f"sldb{os.getpid() % 10000}"
            path = os.path.join(tmp, "dpdk.yaml")
            open(path, "w").write(proxy_yaml("0.0.0.0", 8083, 5201,
                                             dpdk_tap_section(iface, args.proxy_cpu, DPDK_IP),
                                             admin=9912).replace(f"address: {NS_IP}, port_value: 5201",
                                                                 f"address: {DPDK_NS_IP}, port_value: 5201"))
            p = subprocess.Popen([args.sluice_dpdk, "-c", path, "-l", "warning"],
                                 stdout=subprocess.DEVNULL)
            procs.insert(0, ("sluice (dpdk net_tap)", f"{DPDK_IP}:8083", p, 9912))
            adopt(ns, iface, DPDK_NS_IP, p, "sluice (dpdk)", 9912)
        # sluice on kernel sockets and Envoy, inside the namespace.
        path = os.path.join(tmp, "kernel.yaml")
        open(path, "w").write(proxy_yaml(NS_IP, 8081, 5201))
        procs.append(("sluice (kernel)", f"{NS_IP}:8081",
                      subprocess.Popen(inns + pin + [args.sluice, "-c", path, "--concurrency", "1",
                                                     "-l", "warning"]), None))
        path = os.path.join(tmp, "envoy.yaml")
        open(path, "w").write(proxy_yaml(NS_IP, 8082, 5201))
        procs.append(("envoy", f"{NS_IP}:8082",
                      subprocess.Popen(inns + pin + [args.envoy, "-c", path, "--concurrency", "1",
                                                     "-l", "error", "--base-id",
                                                     str(os.getpid() % 60000)],
                                       stdout=subprocess.DEVNULL), None))
        proxies = list(procs)
        server = subprocess.Popen(inns + ["taskset", "-c", str(args.load_cpu), "iperf3", "-s",
                                          "-p", "5201"], stdout=subprocess.DEVNULL)
        procs.append(("iperf3 -s", "", server, None))
        time.sleep(1)  # iperf3 and Envoy print no readiness line we could wait on
        results = {}
        for run in range(args.runs):
            for name, target, p, admin in proxies:
                ip, port = target.split(":")
                frames = stack_frames(admin) if admin else 0
                before = cpu_seconds(p.pid)
                out = subprocess.run(inns + ["taskset", "-c", str(args.load_cpu), "iperf3", "-c", ip,
                                             "-p", port, "-t", str(args.seconds), "-J"],
                                     capture_output=True, text=True)
                cpu = cpu_seconds(p.pid) - before
                frames = (stack_frames(admin) - frames) if admin else 0
                end = json.loads(out.stdout)["end"]["sum_received"]
                results.setdefault(name, []).append((end["bytes"], end["bits_per_second"], cpu,
                                                     frames))
                print(f"(c) run={run + 1} {name:22s} {end['bits_per_second'] / 1e9:6.2f} Gbit/s "
                      f"{cpu / (end['bytes'] / 1e9):.3f} cpu-s/GB", flush=True)
    finally:
        stop_all([p[2] for p in procs], tmp)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    base = results["envoy"]
    base_bps = median(r[1] for r in base)
    base_cpg = median(c / (b / 1e9) for b, _, c, _ in base)
    via = ("sluice (tap) and sluice (dpdk net_tap) reach the namespace's kernel through a TAP "
           "each" if dpdk else "sluice (tap) reaches the namespace's kernel through the TAP")
    lines = [f"**(c) TCP proxy, iperf3 through it, inside one network namespace** (TAP MTU "
             f"{args.tap_mtu}; {via}, the others use the namespace's own TCP)", "",
             "| proxy | Gbit/s | CPU s per GB | CPU per frame | throughput vs Envoy | "
             "CPU/GB vs Envoy |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, runs in results.items():
        bps = median(r[1] for r in runs)
        cpg = median(c / (b / 1e9) for b, _, c, _ in runs)
        per_frame = (f"{median(c / f for _, _, c, f in runs) * 1e9:.0f} ns"
                     if all(f for *_, f in runs) else "—")
        lines.append(f"| {name} | {bps / 1e9:.2f} | {cpg:.3f} | {per_frame} | "
                     f"{bps / base_bps:.2f}× | {cpg / base_cpg:.2f}× |")
    return lines + [""]


def main():
    ap = bench_arguments("a,b,c")
    ap.add_argument("--tap-mtus", default="1500,65521", help="TAP MTUs for part (c), comma list")
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.stackbench = built(args.root, "stackbench")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))
    parts = args.parts.split(",")
    lines = [f"### stack — the userspace TCP/IP stack ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. {args.runs} runs of {args.seconds} s per measurement; medians.",
             ""]
    if "a" in parts:
        lines += part_a(args)
    if "b" in parts:
        lines += part_b(args)
    if "c" in parts:
        if os.geteuid() != 0:
            lines += ["(c) skipped: needs root for TAP devices and namespaces.", ""]
        else:
            for mtu in args.tap_mtus.split(","):
                args.tap_mtu = int(mtu)
                lines += part_c(args, tempfile.mkdtemp(prefix="sluice-bench-"))
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "stack", text)


if __name__ == "__main__":
    main()
