"""pgfleet-performance-report (the pg_performance_report role's script) against a real
cluster: slow statements, an unused index, sequential scans on a large table, bloat left
by a mass delete and growth between two reports appear with real numbers; a standby
writes nothing."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from pgcluster import PgCluster

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "pg_performance_report", "files",
                      "pgfleet-performance-report")


@pytest.fixture(scope="module")
def primary():
    cluster = PgCluster().init()
    cluster.append_conf("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
    cluster.start()
    try:
        conn = cluster.connect()
        conn.cursor().execute("CREATE DATABASE shop")
        conn.close()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def work():
    path = tempfile.mkdtemp(prefix="pgfleet-report-", dir="/var/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(cluster, work):
    config = os.path.join(work, "report.json")
    with open(config, "w", encoding="utf-8") as f:
        json.dump(dict(databases=["shop"], host=cluster.socket_dir, port=cluster.port, server_name="pg-test",
                       dir=os.path.join(work, "reports"), limit=10, large_table_bytes=1048576), f)
    out = subprocess.run([sys.executable, SCRIPT, "--config", config], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def section(text, title):
    return text.split("## " + title, 1)[1].split("\n## ", 1)[0]


def test_report_has_real_numbers_and_growth(primary, work):
    q = primary.query
    q("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname="shop")
    q("CREATE TABLE orders (id int PRIMARY KEY, customer int, note text)", dbname="shop")
    q("INSERT INTO orders SELECT g, g % 1000, repeat('x', 100) FROM generate_series(1, 200000) g", dbname="shop")
    q("CREATE INDEX orders_note_idx ON orders (note)", dbname="shop")  # never used below
    q("DELETE FROM orders WHERE id % 5 <> 0", dbname="shop")  # 80% dead, then vacuumed: the pages stay
    conn = primary.connect("shop")  # autocommit: VACUUM refuses a transaction block
    conn.cursor().execute("VACUUM ANALYZE orders")
    conn.close()
    for _scan in range(3):
        q("SELECT count(*) FROM orders WHERE customer = 7", dbname="shop")
    q("SELECT pg_sleep(1)", dbname="shop")

    first = run(primary, work)
    (path,) = first["reports"].values()
    assert re.search(r"/shop-\d{4}-\d{2}-\d{2}\.md$", path) and os.stat(path).st_mode & 0o777 == 0o640
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("# Performance report: shop on pg-test")
    assert "This is the first report" in section(text, "Growth since the last report")
    by_mean = section(text, "Top statements by mean time")
    top = by_mean.splitlines()[4]  # the first row after the header and its rule
    assert "pg_sleep" in top and float(top.split(" | ")[4]) >= 1000, by_mean
    assert "orders_note_idx" in section(text, "Unused indexes")
    assert "orders_pkey" not in section(text, "Unused indexes")  # it enforces uniqueness
    seq = [line for line in section(text, "Sequential scans on large tables").splitlines() if "public.orders" in line]
    assert seq and int(seq[0].split(" | ")[1]) >= 3, seq
    bloat = [line for line in section(text, "Table bloat (estimate)").splitlines() if "public.orders" in line]
    assert bloat and int(bloat[0].split(" | ")[-1].rstrip("% |")) >= 60, bloat  # 80% of the rows were deleted
    assert "orders_note_idx" in section(text, "Index bloat (estimate, B-tree)")

    q("INSERT INTO orders SELECT g, 1, repeat('y', 500) FROM generate_series(300001, 330000) g", dbname="shop")
    with open(os.path.join(work, "reports", "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    state["shop"]["at"] = "2000-01-01T00:00:00+00:00"  # the last report, long ago (same-day reports share a file)
    with open(os.path.join(work, "reports", "state.json"), "w", encoding="utf-8") as f:
        json.dump(state, f)
    run(primary, work)
    with open(path, encoding="utf-8") as f:
        growth = section(f.read(), "Growth since the last report")
    assert re.search(r"Database size [\d.]+ MB, up [\d.]+ [kMG]?B since 2000-01-01", growth), growth
    assert "public.orders | +" in growth


def test_a_standby_writes_no_report(primary, work):
    standby = PgCluster()
    try:
        standby.init_standby_of(primary).start()
        assert run(standby, work) == {"reports": {}, "standby": True}
        assert not os.path.exists(os.path.join(work, "reports"))
    finally:
        standby.destroy()
