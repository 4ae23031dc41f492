#!/usr/bin/env python3
"""Cache misses per HTTP/1.1 request under valgrind's cachegrind, for sluice builds and nginx on
the same load: figures that do not depend on the machine's noise, for what wall-clock runs
cannot resolve (how much per-connection state a request touches when many connections are
open).

    scripts/bench/cachegrind_http.py [--connections N] [--requests N] [--keep DIR] [BIN ...]
    (default: the sluice of $SLUICE_PROFILE, as common.built; nginx always)

Each proxy gets the http benchmark's setup (one worker, the nginx upstream) and h2load --h1 with
N connections. The caches simulated are this machine's per core: 32 KiB L1 instruction and data
caches and a 1 MiB last level (its L2). Printed per request: instructions, L1 instruction misses,
L1 data misses and last-level misses (reads + writes), from the whole process's totals over the
requests answered.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import built, free_port, wait_port  # noqa: E402
from http_l7 import hcm_config, nginx_proxy, nginx_upstream  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
CACHES = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,16,64"]


def totals(out):
    """Event name -> count from a cachegrind profile's summary."""
    events = summary = None
    with open(out) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                summary = [int(x) for x in line.split()[1:]]
    return dict(zip(events, summary))


def measure(name, cmd, port, tmp, args):
    out = os.path.join(args.keep or tmp, f"cachegrind.{name.replace('/', '_')}.{args.connections}")
    vg = subprocess.Popen(["valgrind", "--tool=cachegrind", *CACHES, f"--cachegrind-out-file={out}"] + cmd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, vg, name, timeout=120)
        load = subprocess.run(["h2load", "-n", str(args.requests), "-c", str(args.connections), "--h1",
                               f"http://127.0.0.1:{port}/"], check=True, capture_output=True, text=True).stdout
    finally:
        vg.terminate()
        vg.wait()
    m = re.search(r"(\d+) succeeded", load)
    n = int(m.group(1)) if m else args.requests
    t = totals(out)
    per = {k: v / n for k, v in t.items()}
    print(f"{name:30s} {per['Ir']:9.0f} instructions  {per['I1mr']:6.0f} L1i misses  "
          f"{per['D1mr'] + per['D1mw']:5.0f} L1d misses  {per['DLmr'] + per['DLmw']:5.0f} last-level misses"
          f"  per request ({n} requests)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--keep", help="a directory to keep the profiles in (for cg_annotate)")
    ap.add_argument("bins", nargs="*")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sluice-cachegrind-")
    up, h1_up, h2_up = nginx_upstream(tmp, 0)
    try:
        for binary in args.bins or [built(ROOT, "sluice")]:
            port, admin = free_port(), free_port()
            cfg = os.path.join(tmp, "sluice.yaml")
            with open(cfg, "w") as f:
                f.write(hcm_config(port, admin, h1_up, h2_up, False))
            measure(binary.replace(ROOT + "/", ""), [binary, "-c", cfg, "--concurrency", "1", "-l", "error"],
                    port, tmp, args)
        # nginx on its own config (written by starting it once the benchmark's way).
        p, port, _ = nginx_proxy(tmp, 1, h1_up)
        wait_port(port, p, "nginx")
        p.terminate()
        p.wait()
        measure("nginx", ["nginx", "-c", os.path.join(tmp, "px.conf"), "-p", tmp], port, tmp, args)
    finally:
        up.terminate()


if __name__ == "__main__":
    main()
