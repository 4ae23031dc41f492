#!/usr/bin/env python3
"""Instructions per request of the rpc_proxy's Bolt path under valgrind's callgrind: a measure
that does not depend on the machine's noise, for comparing builds of sluice.

    scripts/bench/callgrind_bolt.py [BIN ...]      (default: target/release/sluice)

Each build gets the bolt benchmark's rpc_proxy config (one worker, to a boltbench echo server)
and the same load (boltbench load, 50 connections x 20 in flight, 10 s); the figure is the
process's whole instruction count (start-up included, a few million) over the requests it
answered.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bolt import RPC_PROXY_FILTER, SERVICE  # noqa: E402
from common import envoy_yaml, free_port, wait_port, under_callgrind, callgrind_total, built  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def requests_answered(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).read().decode()
    m = re.search(r"^sluice_rpc_downstream_rq_total\{[^}]*\} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def measure(binary, boltbench, upstream, tmp):
    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write(envoy_yaml(port, upstream, admin, filter_yaml=RPC_PROXY_FILTER))
    out = os.path.join(tmp, "callgrind.out")
    vg = under_callgrind(binary, cfg, out)
    try:
        wait_port(port, vg, binary, timeout=120)
        subprocess.run([boltbench, "load", "--target", f"127.0.0.1:{port}", "--connections", "50",
                        "--pipeline", "20", "--seconds", "10", "--service", SERVICE],
                       check=True, stdout=subprocess.DEVNULL)
        answered = requests_answered(admin)
    finally:
        vg.terminate()
        vg.wait()
    total = callgrind_total(out)
    return answered, total


def main():
    bins = sys.argv[1:] or [built(ROOT, "sluice")]
    boltbench = built(ROOT, "boltbench")
    if not os.access(boltbench, os.X_OK):
        subprocess.run(["cargo", "build", "--release", "-p", "sluice-benchtools", "--bin", "boltbench"],
                       cwd=ROOT, check=True)
    upstream = free_port()
    echo = subprocess.Popen([boltbench, "echo", "--listen", f"127.0.0.1:{upstream}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        echo.stdout.readline()
        with tempfile.TemporaryDirectory() as tmp:
            for b in bins:
                answered, total = measure(b, boltbench, upstream, tmp)
                print(f"{b}: {answered} requests, {total} instructions, "
                      f"{total // max(answered, 1)} per request")
                time.sleep(0.5)
    finally:
        echo.terminate()


if __name__ == "__main__":
    main()
