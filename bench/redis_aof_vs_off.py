#!/usr/bin/env python3
"""redis-benchmark SET/GET throughput with AOF (appendfsync everysec) against persistence
off, on the same redis-server in one run.

Persistence is switched on the running server with redis_persistence (the way pgfleet
switches it), and the two modes alternate, ROUNDS times each, so drift in the machine's
load falls on both. Prints the median requests/s of each mode and their ratio (goal:
AOF everysec at least 0.9 of persistence off).
"""

import csv
import io
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, ".lab", "collections"), os.path.join(ROOT, "tests", "integration")]

from modules import run_module  # noqa: E402
from redisserver import RedisServer  # noqa: E402

ROUNDS = 5
REQUESTS = 200_000
CLIENTS = 50
MODES = {
    "off": dict(appendonly=False, save=[]),
    "aof_everysec": dict(appendonly=True, appendfsync="everysec", save=[]),
}


def throughput(port):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(REQUESTS),
                          "-c", str(CLIENTS), "-r", "100000", "-d", "100", "--csv"],
                         capture_output=True, text=True, check=True).stdout
    return {row["test"]: float(row["rps"]) for row in csv.DictReader(io.StringIO(out))}


def main():
    server = RedisServer().start()
    try:
        samples = {mode: {"SET": [], "GET": []} for mode in MODES}
        for _ in range(ROUNDS):
            for mode, settings in MODES.items():
                result = run_module("redis_persistence", dict(login_port=server.port, **settings))
                assert not result.get("failed"), result
                server.client().flushall()
                for test, rps in throughput(server.port).items():
                    samples[mode][test].append(rps)
        print(f"redis-benchmark, {REQUESTS} requests x {CLIENTS} clients, 100-byte values, "
              f"median of {ROUNDS} alternating rounds")
        for test in ("SET", "GET"):
            off = statistics.median(samples["off"][test])
            aof = statistics.median(samples["aof_everysec"][test])
            print(f"  {test}: persistence off {off:,.0f} req/s, AOF everysec {aof:,.0f} req/s, "
                  f"ratio {aof / off:.2f}")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
