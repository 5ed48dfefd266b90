"""pg_partition against a real PostgreSQL 15: the seeds' messages and status_updates tables."""

import datetime
import threading
import time

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from modules import conn_args, run_module

MESSAGES = """
CREATE TABLE messages (id bigserial, created_at timestamptz NOT NULL, body text,
                       PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE INDEX ON messages (created_at);
"""
STATUS = "CREATE TABLE status_updates (id bigserial, created_at timestamp NOT NULL) PARTITION BY RANGE (created_at)"


def month_start(moment, shift=0):
    index = moment.year * 12 + moment.month - 1 + shift
    return datetime.datetime(index // 12, index % 12 + 1, 1)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def month_names(table, first_shift, last_shift):
    now = now_utc()
    return [f"{table}_p{month_start(now, s):%Y%m}" for s in range(first_shift, last_shift + 1)]


def part(cluster, table="messages", check=False, **kw):
    args = dict(conn_args(cluster), table=table, interval="month")
    args.update(kw)
    return run_module("pg_partition", args, check=check)


def children(cluster, parent="messages"):
    rows = cluster.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                         "WHERE i.inhparent = %s::regclass ORDER BY 1", (parent,))
    return [r[0] for r in rows]


@pytest.fixture
def db(pg):
    pg.query(MESSAGES)
    pg.query(STATUS)
    return pg


def test_premake_keeps_current_and_four_future_months(db):
    result = part(db)
    assert not result.get("failed"), result
    assert result["created"] == month_names("messages", 0, 4)
    assert children(db) == month_names("messages", 0, 4)
    other = part(db, table="status_updates", premake=2)
    assert other["created"] == month_names("status_updates", 0, 2)


def test_second_run_changes_nothing(db):
    part(db, start="2024-01-01", default_partition=True)
    again = part(db, start="2024-01-01", default_partition=True)
    assert again["changed"] is False and again["queries"] == [] and again["created"] == []


def test_check_mode_predicts_and_changes_nothing(db):
    predicted = part(db, check=True, premake=3)
    assert predicted["changed"] and predicted["created"] == month_names("messages", 0, 3)
    assert any("ATTACH PARTITION" in q for q in predicted["queries"])
    assert children(db) == []
    assert db.query("SELECT count(*) FROM pg_class WHERE relname ~ '^messages_p[0-9]'") == [(0,)]
    assert part(db, premake=3)["created"] == predicted["created"]


def test_new_partitions_are_attached_not_created_as_partition_of(db):
    result = part(db, premake=0)
    (name,) = result["created"]
    statements = [q.split(" ")[0:2] for q in result["queries"]]
    assert ["CREATE", "TABLE"] in statements and ["ALTER", "TABLE"] in statements
    assert not any("PARTITION OF" in q for q in result["queries"])
    assert any(q.endswith(f'DROP CONSTRAINT "{name}_bounds"') for q in result["queries"])
    # The helper CHECK is gone; the partition constraint remains.
    assert db.query("SELECT count(*) FROM pg_constraint WHERE conname = %s", (f"{name}_bounds",)) == [(0,)]


def test_start_backfills_36_months_of_history(db):
    start = month_start(now_utc(), -36)
    result = part(db, start=f"{start:%Y-%m-%d}")
    assert result["created"] == month_names("messages", -36, 4)
    assert len(children(db)) == 41


def test_retention_removes_exactly_the_partitions_older_than_the_window(db):
    part(db, start=f"{month_start(now_utc(), -12):%Y-%m-%d}", premake=1)
    cutoff = db.query("SELECT (now() AT TIME ZONE 'UTC')::timestamp - interval '6 months'")[0][0]
    expired = [f"messages_p{month_start(now_utc(), s):%Y%m}" for s in range(-12, 0)
               if month_start(now_utc(), s + 1) <= cutoff]
    result = part(db, premake=1, retention="6 months")
    assert result["dropped"] == expired and result["detached"] == []
    assert children(db) == sorted(set(month_names("messages", -12, 1)) - set(expired))
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", (expired,)) == [(0,)]
    assert part(db, premake=1, retention="6 months")["changed"] is False


def test_retention_count_detach_and_move(db):
    part(db, start=f"{month_start(now_utc(), -5):%Y-%m-%d}", premake=2)
    result = part(db, premake=2, retention="3", retention_mode="detach")
    assert result["detached"] == month_names("messages", -5, -3)
    assert children(db) == month_names("messages", -2, 2)
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND NOT relispartition",
                    (result["detached"],)) == [(3,)]
    moved = part(db, premake=2, retention="1", retention_mode="move", archive_schema="archive")
    assert moved["detached"] == month_names("messages", -2, -1)
    assert db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'archive'") == [(2,)]


def test_retention_count_never_creates_what_it_would_remove(db):
    result = part(db, start=f"{month_start(now_utc(), -24):%Y-%m-%d}", premake=1, retention="3")
    assert result["created"] == month_names("messages", -2, 1)
    assert result["dropped"] == [] and result["detached"] == []


def test_newest_partition_is_never_removed(db):
    db.query("CREATE TABLE messages_old PARTITION OF messages FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')")
    result = part(db, table="messages", premake=0, retention="1 day", start="2001-01-01", check=True)
    assert "messages_old" in result["dropped"]
    assert month_names("messages", 0, 0)[0] not in result["dropped"]


def test_rows_in_default_are_moved_into_their_new_partition(db):
    part(db, premake=1, default_partition=True)
    assert "messages_default" in children(db)
    future = month_start(now_utc(), 5)
    db.query("INSERT INTO messages (created_at, body) SELECT %s::timestamp + n * interval '1 minute', 'early' "
             "FROM generate_series(1, 2500) n", (future,))
    assert db.query("SELECT count(*) FROM messages_default") == [(2500,)]
    result = part(db, premake=6, default_partition=True, move_batch_size=1000)
    target = f"messages_p{future:%Y%m}"
    assert result["rows_moved"] == {target: 2500}
    assert db.query("SELECT count(*) FROM messages_default") == [(0,)]
    assert db.query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(target)).as_string(db.connect())) == [(2500,)]
    assert db.query("SELECT count(*) FROM messages") == [(2500,)]


def test_integer_partitions_follow_the_largest_key(db):
    db.query("CREATE TABLE events (id bigint NOT NULL, payload text) PARTITION BY RANGE (id)")
    db.query("CREATE TABLE events_seed PARTITION OF events FOR VALUES FROM (0) TO (1000)")
    db.query("INSERT INTO events SELECT g, 'x' FROM generate_series(0, 999) g")
    result = run_module("pg_partition", dict(conn_args(db), table="events", interval="integer", step=1000, premake=2))
    assert result["created"] == ["events_p1000", "events_p2000"]
    assert run_module("pg_partition", dict(conn_args(db), table="events", interval="integer",
                                           step=1000, premake=2))["changed"] is False


def test_explain_shows_partition_pruning(db):
    part(db, start=f"{month_start(now_utc(), -3):%Y-%m-%d}")
    first = month_start(now_utc(), -1)
    plan = "\n".join(r[0] for r in db.query(
        "EXPLAIN SELECT * FROM messages WHERE created_at >= %s AND created_at < %s",
        (f"{first:%Y-%m-%d}", f"{month_start(now_utc(), 0):%Y-%m-%d}")))
    assert f"messages_p{first:%Y%m}" in plan
    assert sum(f"messages_p{month_start(now_utc(), s):%Y%m}" in plan for s in range(-3, 5)) == 1, plan


def test_writer_gets_no_error_during_maintenance(db):
    part(db, start=f"{month_start(now_utc(), -24):%Y-%m-%d}", premake=1, default_partition=True)
    errors, written, stop = [], [0], threading.Event()

    def writer():
        conn = db.connect()
        cur = conn.cursor()
        while not stop.is_set():
            try:
                cur.execute("INSERT INTO messages (created_at, body) VALUES (now(), 'live')")
                written[0] += 1
            except psycopg2.Error as e:
                errors.append(str(e))
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        result = part(db, premake=12, default_partition=True, retention="12 months")
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert not result.get("failed"), result
    assert len(result["created"]) == 11 and len(result["dropped"]) >= 11
    assert errors == []
    assert written[0] > 0 and db.query("SELECT count(*) FROM messages") == [(written[0],)]


def test_lock_timeout_gives_up_instead_of_queueing(db):
    blocker = db.connect()
    blocker.autocommit = False
    blocker.cursor().execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
    try:
        began = time.monotonic()
        result = part(db, premake=0, lock_timeout="100ms", lock_retries=1)
        took = time.monotonic() - began
    finally:
        blocker.rollback()
        blocker.close()
    assert result.get("failed") and "gave up on create" in result["msg"] and "lock_timeout 100ms" in result["msg"]
    assert took < 10
    assert children(db) == []
    assert db.query("SELECT count(*) FROM pg_class WHERE relname ~ '^messages_p[0-9]'") == [(0,)]


def test_open_reader_transaction_does_not_block_new_partitions(db):
    part(db, premake=0)
    reader = db.connect()
    reader.autocommit = False
    reader.cursor().execute("SELECT count(*) FROM messages")  # holds ACCESS SHARE until it ends
    try:
        result = part(db, premake=3, lock_timeout="500ms", lock_retries=0)
    finally:
        reader.rollback()
        reader.close()
    assert not result.get("failed"), result
    assert len(result["created"]) == 3


@pytest.mark.parametrize(("setup", "args", "error"), [
    ("CREATE TABLE plain (created_at timestamptz)", dict(table="plain"), "is not a partitioned table"),
    ("CREATE TABLE listed (k int) PARTITION BY LIST (k)", dict(table="listed", interval="integer", step=10),
     "BY RANGE on one column"),
    ("CREATE TABLE ints (k int) PARTITION BY RANGE (k)", dict(table="ints"), "has type integer; interval=month needs"),
    ("", dict(interval="integer", step=100), "has type timestamp with time zone; interval=integer needs"),
    ("", dict(interval="integer"), "needs a positive step"),
    ("", dict(lock_timeout="soon"), "lock_timeout 'soon' is not valid"),
    ("", dict(retention="a while"), "retention 'a while' is neither a count nor an interval"),
    ("", dict(start="yesterday-ish"), "start 'yesterday-ish' is not a date or timestamp"),
    ("", dict(retention_mode="move"), "needs archive_schema"),
    ("", dict(table="missing"), "public.missing does not exist"),
])
def test_bad_input_is_refused_and_nothing_changes(db, setup, args, error):
    if setup:
        db.query(setup)
    before = db.query("SELECT count(*) FROM pg_class")
    result = part(db, **args)
    assert result.get("failed") and error in result["msg"], result
    assert db.query("SELECT count(*) FROM pg_class") == before


def test_interval_conflicting_with_existing_partitions_is_refused(db):
    part(db, premake=2)
    before = children(db)
    result = part(db, interval="week", premake=2)
    assert result.get("failed") and "overlaps the existing partition" in result["msg"], result
    assert children(db) == before


NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\0"),
                min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 40 and s.strip())


@settings(max_examples=20, deadline=None)
@given(table=NAMES)
def test_any_table_name_is_quoted_safely(pg_module, table):
    conn = pg_module.connect()
    pg_module.query(sql.SQL("DROP TABLE IF EXISTS {t} CASCADE; CREATE TABLE {t} (at date NOT NULL) "
                            "PARTITION BY RANGE (at)").format(t=sql.Identifier(table)).as_string(conn))
    conn.close()
    args = dict(conn_args(pg_module), table=table, interval="day", premake=1)
    first = run_module("pg_partition", args)
    assert not first.get("failed"), first
    assert len(first["created"]) == 2 and all(n.startswith(table + "_p") for n in first["created"])
    assert run_module("pg_partition", args)["changed"] is False


def test_overlong_partition_name_is_refused(db):
    long_name = "t" * 60
    db.query(f'CREATE TABLE "{long_name}" (at date NOT NULL) PARTITION BY RANGE (at)')
    result = part(db, table=long_name, interval="day")
    assert result.get("failed") and "longer than PostgreSQL's 63 bytes" in result["msg"]


# ---- issue 19: interrupted concurrent detaches, '%' in names, NUL and over-long names --------

def monthly_history(db, months_back):
    db.query("CREATE TABLE m (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)")
    assert not part(db, table="m", premake=1, start=f"{month_start(now_utc(), -months_back):%Y-%m-%d}").get("failed")


def pending(db, parent="m"):
    return [r[0] for r in db.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                   "WHERE i.inhparent = %s::regclass AND i.inhdetachpending ORDER BY 1", (parent,))]


def open_reader(db, table="m"):
    reader = db.connect()
    reader.autocommit = False
    reader.cursor().execute(f"SELECT count(*) FROM {table}")  # an old snapshot DETACH CONCURRENTLY waits for
    return reader


def test_timed_out_concurrent_detach_is_finalized_then_retention_completes(db):
    monthly_history(db, 5)
    expired = month_names("m", -5, -3)  # wholly older than now - 2 months
    reader = open_reader(db)
    try:
        stuck = part(db, table="m", premake=1, retention="2 months", lock_timeout="1s", lock_retries=1)
    finally:
        reader.rollback()
        reader.close()
    # The first phase committed; the retry knew to FINALIZE instead of repeating the statement.
    assert stuck.get("failed") and "gave up on finalize" in stuck["msg"], stuck
    assert "the next run finalizes the pending detach" in stuck["msg"]
    assert any(q.endswith("CONCURRENTLY") for q in stuck["queries"])
    assert pending(db) == [expired[0]]

    predicted = part(db, table="m", check=True, premake=1, retention="2 months")
    assert predicted["changed"] and predicted["finalized"] == [expired[0]]
    assert any(q.endswith(f'"{expired[0]}" FINALIZE') for q in predicted["queries"]), predicted["queries"]
    assert set(predicted["dropped"]) == set(expired) and pending(db) == [expired[0]]

    done = part(db, table="m", premake=1, retention="2 months")
    assert not done.get("failed"), done
    assert done["finalized"] == [expired[0]] and set(done["dropped"]) == set(expired)
    assert pending(db) == [] and children(db, "m") == month_names("m", -2, 1)
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", (expired,)) == [(0,)]
    assert part(db, table="m", premake=1, retention="2 months")["changed"] is False


def test_concurrent_detach_finishes_in_the_same_run_when_the_reader_ends(db):
    monthly_history(db, 4)
    reader = open_reader(db)
    ender = threading.Timer(2.5, reader.rollback)
    ender.start()
    try:
        result = part(db, table="m", premake=1, retention="2 months", retention_mode="move",
                      archive_schema="old_months", lock_timeout="1s", lock_retries=5)
    finally:
        ender.join()
        reader.close()
    assert not result.get("failed"), result
    first = month_names("m", -4, -4)[0]
    assert first in result["finalized"] and result["detached"] == month_names("m", -4, -3)
    assert pending(db) == [] and children(db, "m") == month_names("m", -2, 1)
    assert db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'old_months'") == [(2,)]


@pytest.mark.parametrize("schema, table, key", [
    ("public", "100%_orders", "at"),
    ("pct%s", "t%(x)s", "at"),
    ("public", "orders", "a%t"),
])
def test_percent_in_names_with_a_default_partition(db, schema, table, key):
    conn = db.connect()
    db.query(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE {s}.{t} ({k} timestamptz NOT NULL) "
                     "PARTITION BY RANGE ({k})").format(s=sql.Identifier(schema), t=sql.Identifier(table),
                                                        k=sql.Identifier(key)).as_string(conn))
    first = part(db, schema=schema, table=table, premake=1, default_partition=True)
    assert not first.get("failed"), first
    future = month_start(now_utc(), 3)
    db.query(sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(key), sql.Literal(future)).as_string(conn))
    conn.close()
    more = part(db, schema=schema, table=table, premake=4, default_partition=True)
    assert not more.get("failed") and "exception" not in more, more
    assert more["rows_moved"] == {f"{table}_p{future:%Y%m}": 1}
    assert part(db, schema=schema, table=table, premake=4, default_partition=True)["changed"] is False


def test_nul_in_archive_schema_is_refused_before_any_sql(db):
    monthly_history(db, 4)
    before = children(db, "m")
    result = part(db, table="m", premake=1, retention="1", retention_mode="move", archive_schema="arch\x00ive")
    assert result.get("failed") and result["msg"].startswith("archive_schema:") and "NUL" in result["msg"], result
    assert result["queries"] == []
    assert db.query("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'arch%'") == [(0,)]
    assert children(db, "m") == before


@pytest.mark.parametrize("option, value, why", [
    ("table", "mess\x00ages", "NUL"), ("schema", "pub\x00lic", "NUL"), ("table", "", "empty"),
    ("schema", "s" * 64, "64 bytes"), ("table", "é" * 32, "64 bytes"),
])
def test_bad_identifiers_are_refused_with_the_option_named(db, option, value, why):
    result = part(db, **{option: value})
    assert result.get("failed") and result["msg"].startswith(option + ":") and why in result["msg"], result
    assert "exception" not in result and children(db) == []


def test_default_partition_name_over_63_bytes_is_refused(db):
    name = "d" * 56  # fits with _p202612 (64 - 8) but not with _default
    db.query(f'CREATE TABLE "{name}" (at date NOT NULL) PARTITION BY RANGE (at)')
    result = part(db, table=name, default_partition=True, premake=0)
    assert result.get("failed") and "default partition name" in result["msg"] and "63" in result["msg"], result
    assert db.query("SELECT count(*) FROM pg_inherits") == [(0,)]


def test_infinite_bound_fails_with_json_not_a_traceback(db):
    db.query("CREATE TABLE m (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
             "CREATE TABLE m_future PARTITION OF m FOR VALUES FROM ('2100-01-01') TO ('infinity')")
    result = part(db, table="m")
    assert result.get("failed") and "unexpected error" in result["msg"] and "infinity" in result["msg"], result
    assert "Traceback" in result["exception"]
    assert children(db, "m") == ["m_future"]
