#!/usr/bin/env python3
"""Instructions per request of the HTTP path under valgrind's callgrind: a measure that does not
depend on the machine's noise, for comparing builds of sluice.

    scripts/bench/callgrind_http.py [--keep DIR] [BIN ...]   (default: target/release/sluice)

--keep DIR keeps each profile (DIR/callgrind.<n>.<h1|h2>) for callgrind_annotate.

Each build gets the http benchmark's connection-manager config (one worker, to an nginx
upstream) and the same fixed load: 20,000 HTTP/1.1 keep-alive requests (h2load --h1, 10
connections) and then 20,000 HTTP/2 ones (h2load, 10 connections x 10 streams). The figure is
the process's whole instruction count (start-up included, a few million) over the requests
answered.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, wait_port, under_callgrind, callgrind_total, built  # noqa: E402
from http_l7 import hcm_config, nginx_upstream  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def answered(admin):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).read().decode()
    m = re.search(r"^sluice_http_downstream_rq_2xx\{[^}]*\} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def measure(binary, h1_up, h2_up, tmp, h2):
    port, admin = free_port(), free_port()
    cfg = os.path.join(tmp, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write(hcm_config(port, admin, h1_up, h2_up, False))
    out = os.path.join(tmp, "callgrind.out")
    vg = under_callgrind(binary, cfg, out)
    try:
        wait_port(port, vg, binary, timeout=120)
        load = ["h2load", "-n", "20000", "-c", "10"] + (["-m", "10"] if h2 else ["--h1"])
        subprocess.run(load + [f"http://127.0.0.1:{port}/"], check=True, stdout=subprocess.DEVNULL)
        n = answered(admin)
    finally:
        vg.terminate()
        vg.wait()
    total = callgrind_total(out)
    return n, total, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="a directory to keep the profiles in")
    ap.add_argument("bins", nargs="*")
    args = ap.parse_args()
    bins = args.bins or [built(ROOT, "sluice")]
    with tempfile.TemporaryDirectory() as tmp:
        up, h1_up, h2_up = nginx_upstream(tmp, 0)
        try:
            for i, b in enumerate(bins):
                for h2 in (False, True):
                    n, total, out = measure(b, h1_up, h2_up, tmp, h2)
                    if args.keep:
                        os.makedirs(args.keep, exist_ok=True)
                        shutil.copy(out, os.path.join(args.keep, f"callgrind.{i}.{'h2' if h2 else 'h1'}"))
                    print(f"{b} {'HTTP/2  ' if h2 else 'HTTP/1.1'}: {n} requests, {total} instructions, "
                          f"{total // max(n, 1)} per request", flush=True)
        finally:
            up.terminate()
            up.wait()


if __name__ == "__main__":
    main()
