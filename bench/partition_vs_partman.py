#!/usr/bin/env python3
"""pg_partition beside pg_partman (Debian's postgresql-<version>-partman: 4.7 on Debian 12), in one run.

Same server, same table shape, same data; the two tools alternate round by round:
  setup        create 36 monthly partitions back from now, plus 4 ahead, plus DEFAULT
  maintenance  premake 8 and retention 12 months: 4 partitions created, 24 full ones
               removed (DETACH + DROP)
  writer       a client inserting current rows without pause: the 99th percentile
               and the maximum latency of the INSERTs that overlap the maintenance run
A discarded warm-up round first, then the tools alternate their order round by round
(bench/sides.py); prints every round and the medians of the per-round ratios
pgfleet / pg_partman (below 1 means pgfleet is faster or its writer waits less). A
measurement, not a test: nothing asserts.
"""

import multiprocessing
import os
import statistics
import sys
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, ".lab", "collections"), os.path.join(ROOT, "tests", "integration"),
                os.path.dirname(os.path.abspath(__file__))]

from modules import conn_args, run_module  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402
from pgcluster import PgCluster  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
ROWS_PER_MONTH = int(os.environ.get("BENCH_ROWS_PER_MONTH", "5000"))
TABLE = """
CREATE TABLE {s}.messages (id bigserial, created_at timestamptz NOT NULL, body text,
                           PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE INDEX ON {s}.messages (created_at);
"""


def month_ago(pg, months):
    return pg.query(f"SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '{months} months', 'YYYY-MM-DD')")[0][0]


def fresh(pg, schema):
    pg.query(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};" + TABLE.format(s=schema))
    if schema == "partman_t":
        pg.query("DELETE FROM partman.part_config WHERE parent_table = 'partman_t.messages'")


def load(pg, schema):
    pg.query(f"INSERT INTO {schema}.messages (created_at, body) "
             "SELECT date_trunc('month', now()) - interval '36 months' + (n * interval '36 months' / %s), 'x' "
             "FROM generate_series(1, %s) n", (ROWS_PER_MONTH * 36, ROWS_PER_MONTH * 36))
    pg.query(f"ANALYZE {schema}.messages")


def pgfleet_setup(pg):
    r = run_module("pg_partition", dict(conn_args(pg), schema="pgfleet_t", table="messages", interval="month",
                                        premake=4, start=month_ago(pg, 36), default_partition=True))
    assert not r.get("failed"), r


def pgfleet_maintenance(pg):
    r = run_module("pg_partition", dict(conn_args(pg), schema="pgfleet_t", table="messages", interval="month",
                                        premake=8, retention="12 months", default_partition=True))
    assert not r.get("failed"), r
    return len(r["created"]), len(r["dropped"])


def partman_setup(pg):
    pg.query("SELECT partman.create_parent('partman_t.messages', 'created_at', 'native', 'monthly', "
             "p_premake := 4, p_start_partition := %s, p_jobmon := false)", (month_ago(pg, 36),))


def partman_maintenance(pg):
    pg.query("UPDATE partman.part_config SET premake = 8, retention = '12 months', retention_keep_table = false "
             "WHERE parent_table = 'partman_t.messages'")
    pg.query("SELECT partman.run_maintenance('partman_t.messages', p_jobmon := false)")


def children(pg, schema):
    return pg.query("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (f"{schema}.messages",))[0][0]


def timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t, out


def writer(host, port, schema, stop, out):
    """A separate process (no shared GIL with the tool): insert until told to stop."""
    conn = psycopg2.connect(host=host, port=port, dbname="postgres", user="postgres")
    conn.autocommit = True
    cur = conn.cursor()
    samples, errors = [], 0
    while not stop.is_set():
        t = time.perf_counter()
        try:
            cur.execute(f"INSERT INTO {schema}.messages (created_at, body) VALUES (now(), 'live')")
            samples.append((t, time.perf_counter()))
        except psycopg2.Error:
            errors += 1
    conn.close()
    out.send((samples, errors))


def with_writer(pg, schema, fn):
    """Run FN while a client inserts current rows.

    Returns FN's seconds, the latencies of the inserts that overlapped FN's run, errors.
    """
    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.Process(target=writer, args=(pg.socket_dir, pg.port, schema, stop, send))
    proc.start()
    time.sleep(0.3)
    try:
        began = time.perf_counter()
        seconds, _ = timed(fn, pg)
        ended = time.perf_counter()
        time.sleep(0.1)
    finally:
        stop.set()
        samples, errors = receive.recv()
        proc.join()
    # perf_counter is CLOCK_MONOTONIC, shared by both processes
    during = [end - start for start, end in samples if end >= began and start <= ended]
    return seconds, during, [None] * errors


def p99(values):
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def main():
    pg = PgCluster()
    try:
        pg.init()
        pg.append_conf("shared_buffers = '256MB'\nmax_wal_size = '2GB'\n")
        pg.start()
        pg.query("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
        version = pg.query("SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'")[0][0]
        tools = {"pgfleet": ("pgfleet_t", pgfleet_setup, pgfleet_maintenance),
                 "pg_partman": ("partman_t", partman_setup, partman_maintenance)}
        errors = {name: 0 for name in tools}

        def measure(name):
            schema, setup, maintenance = tools[name]
            fresh(pg, schema)
            setup_s, _ = timed(setup, pg)
            load(pg, schema)
            maint_s, lat, err = with_writer(pg, schema, maintenance)
            errors[name] += len(err)
            return {"setup_ms": setup_s * 1000, "maintenance_ms": maint_s * 1000, "writer_p99_ms": p99(lat) * 1000,
                    "writer_max_ms": max(lat) * 1000, "inserts": len(lat), "errors": len(err)}

        print(f"pg_partition vs pg_partman {version}: {ROWS_PER_MONTH * 36} rows over 36 months; setup of 36 months "
              "+ 4 ahead + DEFAULT, then maintenance (4 created, 24 dropped) under a writer")
        samples = alternate(tools, ROUNDS, measure)
        for metric, what in (("setup_ms", "setup time"), ("maintenance_ms", "maintenance time"),
                             ("writer_p99_ms", "writer INSERT p99 during maintenance"),
                             ("writer_max_ms", "writer worst stall during maintenance")):
            headline("partitions", f"{what} pgfleet/pg_partman", round_ratios(samples, "pgfleet", "pg_partman", metric),
                     goal="< 1" if metric != "writer_p99_ms" else "<= 1")
        print(f"writer errors: pgfleet {errors['pgfleet']}, pg_partman {errors['pg_partman']} (measured rounds and warm-up)")
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
