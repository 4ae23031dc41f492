#!/usr/bin/env python3
"""The `hostile` benchmark: what careless and hostile clients cost sluice and Envoy 1.40.

Both run the same Envoy-format tcp_proxy config (defaults: 1 MiB per-connection buffer limit),
one worker pinned to the proxy core, in front of Node echo servers (tests/js/echo_server.js) on
the load core. Per proxy and run:

  idle       5,000 connections to a freshly started proxy, one small exchange each, then
             silence: its RSS and open descriptors per connection (from /proc after 1.5 s).
  noread     one client that writes 1 KiB chunks and never reads the echo: how much the proxy
             takes in before TCP holds the writer back (1 s blocked), and its RSS growth.
  short      20,000 short connections (connect, 1 KiB echo, close) from 4 threads: connections
             per second and the proxy's CPU time per 1,000 connections.
  deadhost   a cluster of two endpoints, one of which refuses connections: 3 s of clients that
             each open a new connection for one exchange; client failures and connect attempts
             to the dead endpoint (the proxy's connect-failure counter).

Medians of the runs; results go to docs/benchmarks.md with the machine description.
"""
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import (bench_arguments, cpu_seconds, free_port, machine, start_proxy, stop_all, built,
                    wait_port, write_markdown)

PROXIES = ("sluice", "envoy")


def config(listen, admin, endpoints, envoy=False):
    """The tcp_proxy config both proxies run. Envoy's default circuit breaker allows 1,024
    upstream connections per cluster (more are closed at once); it is raised for Envoy so that
    both carry 5,000 idle connections (sluice has no circuit breakers yet)."""
    eps = "".join(
        f"        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n"
        for p in endpoints)
    return f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: bench
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: upstream
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 5s
{{breakers}}    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
{eps}""".replace("{breakers}", "    circuit_breakers: {thresholds: [{max_connections: 1000000}]}\n"
                                     if envoy else "")


def node_echo(args, port=0):
    p = subprocess.Popen(["taskset", "-c", str(args.load_cpu), "node",
                          os.path.join(args.root, "tests/js/echo_server.js"), "--port", str(port)],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        raise RuntimeError(f"echo_server.js did not start: {line!r}")
    return p, int(line.split()[1])


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def exchange(port, payload=b"x" * 1024):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                return False
            got += chunk
        return got == payload


def idle(port, pid, n=5000):
    rss0, fds0 = rss_kib(pid), fds(pid)
    conns, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"hello")
            if s.recv(16):
                conns.append(s)
                continue
            s.close()
        except OSError:
            pass
        failed += 1
    time.sleep(1.5)
    rss, nfds = rss_kib(pid), fds(pid)
    for s in conns:
        s.close()
    k = max(len(conns), 1)
    return {"kib_per_cx": (rss - rss0) / k, "fds_per_cx": (nfds - fds0) / k, "failed": failed}


def idle_fresh(args, tmp, name, echo_port):
    port, admin = free_port(), free_port()
    p = start_proxy(args, tmp, name + "-idle", config(port, admin, [echo_port], name == "envoy"),
                    envoy=name == "envoy")
    try:
        wait_port(port, p, name)
        time.sleep(0.5)
        return idle(port, p.pid)
    finally:
        stop_all([p], None)


def noread(port, pid, stall=1.0, cap=512 << 20):
    rss0 = rss_kib(pid)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    unit = b"y" * 1024
    written, blocked_since = 0, None
    while written < cap:
        try:
            written += s.send(unit)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.time()
            if time.time() - blocked_since >= stall:
                break
            time.sleep(0.005)
    rss = rss_kib(pid)
    s.close()
    return {"mib_taken": written / 2**20, "rss_growth_mib": (rss - rss0) / 1024}


def short(port, pid, n=20000, threads=4):
    failed = [0]
    def worker(k):
        for _ in range(k):
            try:
                if not exchange(port):
                    failed[0] += 1
            except OSError:
                failed[0] += 1
    cpu0, t0 = cpu_seconds(pid), time.time()
    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took, cpu = time.time() - t0, cpu_seconds(pid) - cpu0
    return {"cx_per_s": n / took, "cpu_ms_per_1000": cpu / n * 1e6, "failed": failed[0]}


def connect_failures(name, admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).read().decode()
    want = ('sluice_cluster_upstream_cx_connect_fail{cluster="upstream"}' if name == "sluice"
            else "cluster.upstream.upstream_cx_connect_fail:")
    for line in text.splitlines():
        if line.startswith(want):
            return int(line[len(want):].strip())
    return 0


def deadhost(port, name, admin, seconds=3.0):
    before = connect_failures(name, admin)
    ok = failed = 0
    end = time.time() + seconds
    while time.time() < end:
        try:
            if exchange(port, b"z" * 64):
                ok += 1
            else:
                failed += 1
        except OSError:
            failed += 1
    return {"attempts_dead": connect_failures(name, admin) - before, "client_failed": failed,
            "client_ok": ok}


def main():
    ap = bench_arguments("idle,noread,short,deadhost")
    args = ap.parse_args()
    args.sluice = built(args.root, "sluice")
    args.envoy = os.environ.get("SLUICE_ENVOY", os.path.join(args.root, ".tools/venv/bin/envoy"))
    parts = args.parts.split(",")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    procs, results = [], {}
    try:
        echo, echo_port = node_echo(args)
        dead_port = free_port()  # nothing listens there
        procs.append(echo)
        proxies = []
        for name in PROXIES:
            port, admin = free_port(), free_port()
            p = start_proxy(args, tmp, name, config(port, admin, [echo_port], name == "envoy"),
                            envoy=name == "envoy")
            procs.append(p)
            proxies.append((name, port, admin, p))
            dport, dadmin = free_port(), free_port()
            d = start_proxy(args, tmp, name + "-dead", config(dport, dadmin, [echo_port, dead_port], name == "envoy"),
                            envoy=name == "envoy")
            procs.append(d)
            proxies.append((name + "-dead", dport, dadmin, d))
        for name, port, _, p in proxies:
            wait_port(port, p, name)
        for run in range(args.runs):
            for name, port, admin, p in proxies:
                base = name.removesuffix("-dead")
                todo = ["deadhost"] if name.endswith("-dead") else [x for x in parts if x != "deadhost"]
                for part in todo:
                    if part not in parts:
                        continue
                    if part == "idle":
                        # A fresh process each run: a warm one reuses the memory its allocator
                        # kept from the last run's connections, and would show nothing.
                        r = idle_fresh(args, tmp, base, echo_port)
                        results.setdefault((part, base), []).append(r)
                        print(f"run={run + 1} {part:8s} {base:7s} {r}", flush=True)
                        continue
                    r = {
                         "noread": lambda: noread(port, p.pid),
                         "short": lambda: short(port, p.pid),
                         "deadhost": lambda: deadhost(port, base, admin)}[part]()
                    results.setdefault((part, base), []).append(r)
                    print(f"run={run + 1} {part:8s} {base:7s} {r}", flush=True)
                    time.sleep(0.5)
    finally:
        stop_all(procs, tmp)

    def med(part, name, key):
        return statistics.median(r[key] for r in results[(part, name)])

    rows = [("idle", "kib_per_cx", "RSS per idle connection (KiB)", "{:.1f}"),
            ("idle", "fds_per_cx", "descriptors per idle connection", "{:.2f}"),
            ("noread", "mib_taken", "taken from a client that never reads, before it is held back (MiB)", "{:.1f}"),
            ("noread", "rss_growth_mib", "RSS growth meanwhile (MiB)", "{:.1f}"),
            ("short", "cx_per_s", "short connections per second", "{:,.0f}"),
            ("short", "cpu_ms_per_1000", "proxy CPU per 1,000 short connections (ms)", "{:.0f}"),
            ("deadhost", "attempts_dead", "connect attempts to a dead endpoint in 3 s", "{:,.0f}"),
            ("deadhost", "client_failed", "clients failed meanwhile (of about as many as the 'ok' row)", "{:,.0f}"),
            ("deadhost", "client_ok", "clients served meanwhile", "{:,.0f}")]
    lines = [f"### hostile — what careless and hostile clients cost ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {machine()}. Each proxy runs the same Envoy-format tcp_proxy config with "
             f"defaults (1 MiB per-connection buffer limit), one worker pinned to CPU "
             f"{args.proxy_cpu}; Node echo servers and the Python clients on CPU {args.load_cpu}. "
             f"Medians of {args.runs} runs. Envoy's default circuit breaker (1,024 upstream "
             "connections per cluster) is raised so that it carries the 5,000 idle connections. "
             "Envoy's tcp_proxy makes one connect attempt per "
             "client by default (`max_connect_attempts` 1); sluice's tries each host once and "
             "passes hosts that are backing off after a failed connect.", "",
             "| measure | sluice | Envoy | sluice / Envoy |", "|---|---:|---:|---:|"]
    for part, key, label, fmt in rows:
        if (part, "sluice") not in results or (part, "envoy") not in results:
            continue
        a, b = med(part, "sluice", key), med(part, "envoy", key)
        ratio = f"{a / b:.2f}×" if abs(b) >= 0.05 else "—"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_markdown(os.path.join(args.root, "docs/benchmarks.md"), "hostile", text)


if __name__ == "__main__":
    sys.exit(main())
