#!/usr/bin/env python3
"""The load the requirement documents name: 1,000 client connections held open through
PgBouncer, and 1,000 requests a second of a mixed workload sustained for minutes, with p95
latency. Side by side, the same 1,000 clients straight to PostgreSQL (max_connections raised
to let them in), in one run.

The workload is pgbench's, rate-limited (`-R`), each transaction picked at random: 80%
select-only, 20% TPC-B-like (3 updates, a select, an insert). Latency counts from each
transaction's scheduled start, so a server falling behind shows in it. Every sample prints
the clients that got in and stayed, failed transactions, the rate reached, p50/p95/p99 and
the server backends in database bench (on the direct side PgBouncer's idle server
connections are among them). The sides alternate round by round after a discarded
warm-up (bench/sides.py); headlines are per-round medians of PgBouncer over direct.
"""

import glob
import os
import re
import statistics
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bouncer import pgbench, server_and_bouncer  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "120"))
CLIENTS = 1000
RATE = 1000
POOL = 20
MIX = ["-b", "select-only@8", "-b", "tpcb-like@2"]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    with server_and_bouncer(scale=50, max_connections=CLIENTS + 50, pool_size=POOL,
                            max_client_conn=CLIENTS + 100) as (cluster, paths, work):
        def backends():
            return cluster.query("SELECT count(*) FROM pg_stat_activity WHERE datname = 'bench'")[0][0]

        def measure(side):
            for old in glob.glob(f"{work}/pgbench_log.*"):
                os.remove(old)
            peak = [0]
            done = threading.Event()

            def watch():  # the most server backends in use while the clients run
                while not done.wait(2):
                    peak[0] = max(peak[0], backends())
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                out = pgbench(paths[side], *MIX, "-n", "-c", str(CLIENTS), "-j", "2", "-R", str(RATE),
                              "-T", str(SECONDS), "-l", cwd=work)
            finally:
                done.set()
                watcher.join()
            # pgbench's log: client, transaction, time (us), script, epoch, us, schedule lag (us).
            latencies = []
            for name in glob.glob(f"{work}/pgbench_log.*"):
                with open(name, encoding="utf-8") as f:
                    for line in f:
                        field = line.split()
                        if not field[2].isdigit():  # "failed" (counted by pgbench below)
                            continue
                        latencies.append((int(field[2]) + int(field[6])) / 1000)
            clients = int(re.search(r"number of clients: (\d+)", out).group(1))
            failed = re.search(r"number of failed transactions: (\d+)", out)
            return {"clients": clients, "failed": int(failed.group(1)) if failed else 0,
                    "tps": float(re.search(r"tps = ([\d.]+)", out).group(1)),
                    "p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 95),
                    "p99_ms": percentile(latencies, 99), "backends": peak[0]}

        print(f"pgbench, {CLIENTS} clients held for {SECONDS} s a sample at -R {RATE} "
              f"(80% select-only, 20% tpcb-like, scale 50); TLS and scram-sha-256 on every client; "
              f"PgBouncer transaction pooling, {POOL} server connections, TLS to the server")
        samples = alternate(["pgbouncer", "direct"], ROUNDS, measure)
        for side, runs in samples.items():
            print(f"{side}: clients held {min(r['clients'] for r in runs)} of {CLIENTS} in every round, "
                  f"failed transactions {sum(r['failed'] for r in runs)}, rate {min(r['tps'] for r in runs):,.0f}"
                  f"-{max(r['tps'] for r in runs):,.0f}/s of {RATE}, p95 "
                  f"{statistics.median(r['p95_ms'] for r in runs):.1f} ms (median of rounds), "
                  f"server backends up to {max(r['backends'] for r in runs)}")
        headline("pgbouncer_1000", "p95 latency pgbouncer/direct at 1,000 clients",
                 round_ratios(samples, "pgbouncer", "direct", "p95_ms"))
        headline("pgbouncer_1000", "rate reached pgbouncer/direct at 1,000 clients",
                 round_ratios(samples, "pgbouncer", "direct", "tps"))
        headline("pgbouncer_1000", "server backends pgbouncer/direct at 1,000 clients",
                 round_ratios(samples, "pgbouncer", "direct", "backends"))


if __name__ == "__main__":
    main()
