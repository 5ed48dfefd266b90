#!/usr/bin/env python3
"""Connection overhead: `pgbench -C` (a new connection for every transaction) straight to
PostgreSQL and through PgBouncer, on the same server, in one run.

Both paths are what pgfleet deploys: TLS and scram-sha-256 from the client, and through
PgBouncer transaction pooling, the user looked up with auth_query via a SECURITY DEFINER
function, TLS to the server. Each is also run with clients without TLS, to show the share
of the handshake. The four sides alternate their order round by round after a discarded
warm-up (bench/sides.py), every sample is printed, and the headline is the client
connection time through PgBouncer over direct (the requirement documents promise 60% less
connection overhead: a ratio of at most 0.40), the median of the per-round ratios.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bouncer import pgbench, server_and_bouncer  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = 10
CLIENTS = 8
# Clients over TLS (as pgfleet's PgBouncer demands), and without it to show what TLS costs.
CLIENT_TLS = {"tls": "require", "plain": "disable"}


def server_sessions(cluster):
    """Sessions the server has opened in database bench (PostgreSQL 14+ counts them)."""
    return cluster.query("SELECT sessions FROM pg_stat_database WHERE datname = 'bench'")[0][0]


def main():
    with server_and_bouncer(scale=10, max_connections=100, pool_size=CLIENTS, max_client_conn=200) as (cluster, paths, _):
        def measure(side):
            path, mode = side.split(" client ")
            opened = server_sessions(cluster)
            out = pgbench(paths[path], "-C", "-S", "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS),
                          sslmode=CLIENT_TLS[mode])
            done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
            return {"connect_ms": float(re.search(r"average connection time = ([\d.]+) ms", out).group(1)),
                    "tps": float(re.search(r"tps = ([\d.]+)", out).group(1)),
                    # sessions the server forked per 1,000 transactions
                    "server_sessions_per_1000": (server_sessions(cluster) - opened) * 1000 / done}

        print(f"pgbench -C -S (scale 10), {CLIENTS} clients, {SECONDS} s a sample; scram-sha-256 on every client "
              "connection; PgBouncer to the server over TLS")
        sides = [f"{path} client {mode}" for mode in CLIENT_TLS for path in paths]
        samples = alternate(sides, ROUNDS, measure)
        for mode in CLIENT_TLS:
            bouncer_side, direct_side = f"pgbouncer client {mode}", f"direct client {mode}"
            headline("pgbouncer", f"client connection time pgbouncer/direct, client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "connect_ms"),
                     goal="<= 0.40" if mode == "tls" else None)
            headline("pgbouncer", f"TPS pgbouncer/direct (pgbench -C), client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "tps"))
            headline("pgbouncer", f"server sessions forked pgbouncer/direct, client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "server_sessions_per_1000"))


if __name__ == "__main__":
    main()
