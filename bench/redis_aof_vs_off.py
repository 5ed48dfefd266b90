#!/usr/bin/env python3
"""redis-benchmark SET/GET throughput with AOF (appendfsync everysec) against persistence
off, on the same redis-server in one run, without pipelining and with 16 commands a
round trip (-P 16, where the AOF's write cost shows instead of the network's).

Persistence is switched on the running server with redis_persistence (the way pgfleet
switches it). The modes alternate their order round by round after a discarded warm-up
(bench/sides.py); every sample is printed, and the headline per test is the median of the
per-round ratios AOF/off (goal: at least 0.9).
"""

import csv
import io
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, ".lab", "collections"), os.path.join(ROOT, "tests", "integration"),
                os.path.dirname(os.path.abspath(__file__))]

from modules import run_module  # noqa: E402
from redisserver import RedisServer  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
REQUESTS = 200_000
CLIENTS = 50
PIPELINES = (1, 16)
MODES = {
    "off": dict(appendonly=False, save=[]),
    "aof_everysec": dict(appendonly=True, appendfsync="everysec", save=[]),
}


def throughput(port, pipeline):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(REQUESTS),
                          "-c", str(CLIENTS), "-r", "100000", "-d", "100", "-P", str(pipeline), "--csv"],
                         capture_output=True, text=True, check=True).stdout
    return {"%s -P%d" % (row["test"], pipeline): float(row["rps"]) for row in csv.DictReader(io.StringIO(out))}


def main():
    server = RedisServer().start()
    try:
        def measure(mode):
            result = run_module("redis_persistence", dict(login_port=server.port, **MODES[mode]))
            assert not result.get("failed"), result
            server.client().flushall()
            sample = {}
            for pipeline in PIPELINES:
                sample.update(throughput(server.port, pipeline))
            return sample

        print(f"redis-benchmark, {REQUESTS} requests x {CLIENTS} clients, 100-byte values, requests/s")
        samples = alternate(MODES, ROUNDS, measure)
        for metric in samples["off"][0]:
            headline("redis", f"AOF everysec / off, {metric} req/s",
                     round_ratios(samples, "aof_everysec", "off", metric), goal=">= 0.90")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
