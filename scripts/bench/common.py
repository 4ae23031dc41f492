"""Helpers shared by the benchmark drivers: CPU time from /proc, ports, readiness, Envoy's
tcp_proxy config, the machine description and the docs/benchmarks.md writer."""
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_arguments(parts):
    """The arguments every driver takes; `parts` is the default list of parts to run."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--parts", default=parts)
    ap.add_argument("--proxy-cpu", type=int, default=1)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    return ap


def built(root, name):
    """The path of binary `name` as built in cargo profile $SLUICE_PROFILE (run.sh builds and
    sets `dist`, what sluice is deployed as; `release` when unset)."""
    return os.path.join(root, "target", os.environ.get("SLUICE_PROFILE", "release"), name)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11], fields[12] are utime and stime (stat fields 14 and 15).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid):
    """(user, system) CPU seconds of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not listen on {port} within {timeout}s")


def wait_ready(admin, proc, name, timeout=20):
    """Waits until the sluice whose admin port is `admin` serves (its /ready answers)."""
    import urllib.request
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1)
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not come up")
            time.sleep(0.05)


TCP_PROXY_FILTER = """      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: upstream"""


def envoy_yaml(listen, upstream, admin, extra="", filter_yaml=TCP_PROXY_FILTER,
               listen_ip="127.0.0.1", upstream_ip="127.0.0.1"):
    """One listener with `filter_yaml` as its filter, in front of cluster `upstream`."""
    return f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: bench
    address: {{socket_address: {{address: {listen_ip}, port_value: {listen}}}}}
    filter_chains:
    - filters:
{filter_yaml}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {upstream_ip}, port_value: {upstream}}}}}}}
{extra}"""


_envoys_started = 0


def start_proxy(args, tmp, name, yaml_text, envoy=False, binary=None):
    """Starts sluice (or Envoy) with one worker pinned to the proxy CPU on `yaml_text`; returns
    the Popen, whose pid is the process doing the work (the Envoy pip wrapper exec()s the real
    binary, and Envoy exits when its parent does). `binary` runs another sluice build."""
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml_text)
    pin = ["taskset", "-c", str(args.proxy_cpu)]
    if envoy:
        # Each Envoy of one driver needs its own shared-memory base id.
        global _envoys_started
        _envoys_started += 1
        base_id = (os.getpid() + _envoys_started) % 60000
        return subprocess.Popen(pin + [args.envoy, "-c", path, "--concurrency", "1", "-l", "error",
                                       "--base-id", str(base_id)],
                                stdout=subprocess.DEVNULL)
    return subprocess.Popen(pin + [binary or args.sluice, "-c", path, "--concurrency", "1", "-l",
                                   "warning"])


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    profile = os.environ.get("SLUICE_PROFILE", "release")
    return (f"{os.cpu_count()} × {model}, {mem:.0f} GiB RAM, Linux {platform.release()}, loopback; "
            f"sluice built in cargo profile `{profile}`")


def write_markdown(path, section, text):
    """Replaces the block between <!-- bench:SECTION --> markers in docs/benchmarks.md."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    block = f"{start}\n{text}\n{end}"
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if start in doc and end in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def stop_all(popens, tmp):
    """Stops every process (SIGTERM, then SIGKILL after 5 s) and removes the scratch folder."""
    for p in popens:
        p.terminate()
    for p in popens:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def under_callgrind(binary, cfg, out):
    """Starts `binary` (sluice) on `cfg` with one worker under valgrind's callgrind, writing its
    profile to `out`."""
    return subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
                             "-c", cfg, "--concurrency", "1", "-l", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def callgrind_total(out):
    """The instruction count a callgrind profile ends with."""
    with open(out) as f:
        return next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
