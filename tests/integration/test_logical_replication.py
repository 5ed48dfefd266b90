"""Declared publications and subscriptions (issue 21, item 2) through the postgresql_primary
role's own tasks, between two real clusters on this host: the subscriber verifies the
publisher's certificate, reads its password from a 0600 file (never from the catalog), copies
the present rows and streams new ones; a second run and --check change nothing; bad
declarations are refused before any change; a dropped subscription leaves no slot behind;
postgres_exporter reports both sides."""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap

import pytest
import yaml

from pgcluster import PgCluster
from services import enable_ssl, make_tls
from test_exporters import postgres_exporter, rule_metrics, until, value, work  # noqa: F401 (work: the exporter's fixture)

PASSWORD = "logical:pass\\word-Zq81"  # a ':' and a '\\' that the password file must escape
SCHEMA = "CREATE TABLE orders (id bigint PRIMARY KEY, note text)"

PLAYBOOK = """
- name: The primary role's logical replication, as site.yml runs it
  hosts: postgres
  gather_facts: false
  any_errors_fatal: true  # as site.yml checks the inventory: one bad host stops them all
  module_defaults:
    group/community.postgresql.all:
      login_unix_socket: "{{ pg_socket_dir }}"
      login_port: "{{ pg_port }}"
  tasks:
    - name: Check the declarations
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: validate}
    - name: Read the present secrets
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: secrets}
    - name: Publish and subscribe
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: logical}
"""


@pytest.fixture(scope="module")
def clusters():
    tls_dir = tempfile.mkdtemp(prefix="pgfleet-logical-", dir="/var/tmp")
    os.chmod(tls_dir, 0o755)
    tls = make_tls(tls_dir)
    publisher, subscriber = PgCluster(tcp=True).init(), PgCluster().init()
    try:
        enable_ssl(publisher, tls)
        # What the server role writes once the fleet declares a publication.
        publisher.append_conf("wal_level = logical\n")
        for cluster in (publisher.start(), subscriber.start()):
            cluster.query("CREATE ROLE prometheus LOGIN IN ROLE pg_monitor")
            cluster.create_database("shop")
            cluster.query(SCHEMA, dbname="shop")
        publisher.query("INSERT INTO orders SELECT g, 'before' FROM generate_series(1, 500) g", dbname="shop")
        yield publisher, subscriber, tls
    finally:
        subscriber.destroy()
        publisher.destroy()
        shutil.rmtree(tls_dir, ignore_errors=True)


def inventory(path, publisher, subscriber, tls, publications=None, subscriptions=None):
    # The host's python3 (with Debian's psycopg2, as on a fleet host): postgres cannot run the venv's.
    common = dict(ansible_connection="local", ansible_python_interpreter="/usr/bin/python3",
                  ansible_become_method="su", pg_logical_replication_password=PASSWORD)
    pub = dict(common, ansible_host="localhost", pg_socket_dir=publisher.socket_dir, pg_port=publisher.port,
               pg_publications=publications if publications is not None else [{"name": "shop_pub", "db": "shop"}])
    sub = dict(common, pg_socket_dir=subscriber.socket_dir, pg_port=subscriber.port,
               pg_logical_ssl_rootcert=tls["ca.crt"],
               pg_logical_passfile=os.path.join(subscriber.base, "pgpass.logical"),
               pg_subscriptions=subscriptions if subscriptions is not None else [
                   {"name": "shop_sub", "db": "shop", "source": "pub", "publications": ["shop_pub"]}])
    path.write_text(yaml.safe_dump({"all": {"children": {"postgres": {"hosts": {"pub": pub, "sub": sub}}}}}))
    return path


def play(tmp_path, inv, *extra, expect_rc=0):
    book = tmp_path / "logical.yml"
    book.write_text(textwrap.dedent(PLAYBOOK))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", str(inv), str(book), *extra],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == expect_rc, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert "logical:pass" not in proc.stdout + proc.stderr  # no_log holds
    return json.loads(proc.stdout)


def rows(cluster):
    return cluster.query("SELECT count(*), coalesce(max(id), 0) FROM orders", dbname="shop")[0]


def test_subscription_copies_streams_and_converges(clusters, tmp_path, work):  # noqa: F811
    publisher, subscriber, tls = clusters
    inv = inventory(tmp_path / "inv.yml", publisher, subscriber, tls)

    report = play(tmp_path, inv)
    assert report["stats"]["pub"]["changed"] == 4  # user, membership, CONNECT, publication
    assert report["stats"]["sub"]["changed"] == 2  # password file, subscription
    until(lambda: rows(subscriber) == (500, 500), "the initial copy never arrived", timeout=60)
    publisher.query("INSERT INTO orders SELECT g, 'after' FROM generate_series(501, 600) g", dbname="shop")
    until(lambda: rows(subscriber) == (600, 600), "new rows never streamed", timeout=60)

    # The connection string in the catalog names the password file, never the password;
    # the file is postgres's alone, with the ':' and '\' escaped as libpq reads them.
    conninfo = subscriber.query("SELECT subconninfo FROM pg_subscription")[0][0]
    assert "passfile=" in conninfo and "sslmode=verify-full" in conninfo and "pass\\word" not in conninfo
    st = os.stat(os.path.join(subscriber.base, "pgpass.logical"))
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, pwd.getpwnam("postgres").pw_uid)
    with open(os.path.join(subscriber.base, "pgpass.logical"), encoding="utf-8") as f:
        assert f.read().endswith(":shop:logical_replicator:logical\\:pass\\\\word-Zq81\n")
    # The publisher's role reads and replicates, and writes nothing.
    assert publisher.query("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = 'logical_replicator'") == [(True, False)]
    assert publisher.query("SELECT has_table_privilege('logical_replicator', 'orders', 'INSERT'),"
                           " has_table_privilege('logical_replicator', 'orders', 'SELECT')", dbname="shop") == [(False, True)]

    for extra in ([], ["--check", "--diff"]):
        stats = play(tmp_path, inv, *extra)["stats"]
        assert stats["pub"]["changed"] == 0 and stats["sub"]["changed"] == 0, (extra, stats)

    # Monitoring: the subscriber's worker and the publisher's logical slot, as the alert rules read them.
    for cluster, name, labels, expected in (
            (subscriber, "pgfleet_subscription_worker_running", {"subname": "shop_sub", "datname": "shop"}, 1),
            (subscriber, "pgfleet_subscription_enabled", {"subname": "shop_sub"}, 1),
            (publisher, "pgfleet_replication_slot_active", {"slot_name": "shop_sub", "slot_type": "logical"}, 1)):
        exporter = postgres_exporter(cluster, work)
        try:
            text = exporter.metrics()
            assert value(text, name, **labels) == expected, (name, text[-2000:])
            if cluster is subscriber:  # everything the subscription alert reads
                for metric in rule_metrics(("pgfleet_subscription",)):
                    assert value(text, metric, subname="shop_sub") is not None, metric
            if cluster is publisher:
                assert value(text, "pgfleet_replication_slot_confirmed_lag_bytes", slot_name="shop_sub") is not None
        finally:
            exporter.stop()


def test_bad_declarations_are_refused_before_any_change(clusters, tmp_path):
    publisher, subscriber, tls = clusters
    before = (publisher.query("SELECT count(*) FROM pg_publication", dbname="shop"),
              subscriber.query("SELECT count(*) FROM pg_subscription"))
    cases = [
        ({"publications": [{"name": "Shop-Pub", "db": "shop"}]}, 'publication name "Shop-Pub" is not a lower-case identifier'),
        ({"publications": [{"name": "p2", "db": "shop", "publish": ["insert", "upsert"]}]}, 'publishes "upsert"'),
        ({"subscriptions": [{"name": "s2", "db": "shop", "source": "pub", "publications": ["nope"]}]},
         'asks for publication "nope", which pg_publications does not declare in shop'),
        ({"subscriptions": [{"name": "s3", "db": "shop", "source": "elsewhere"}]}, 'has source "elsewhere", not an inventory host'),
        ({"subscriptions": [{"name": "s4", "db": "shop", "source": "sub"}]}, "needs a source other than this host"),
    ]
    for case, message in cases:
        inv = inventory(tmp_path / "bad.yml", publisher, subscriber, tls, **case)
        report = play(tmp_path, inv, expect_rc=2)
        failed = [h for p in report["plays"] for t in p["tasks"] for h in t["hosts"].values() if h.get("failed")]
        assert failed and message in failed[0]["msg"], (case, failed)
        # Every host stops at the check: nothing after it ran anywhere.
        assert all(s["changed"] == 0 for s in report["stats"].values()), report["stats"]
    after = (publisher.query("SELECT count(*) FROM pg_publication", dbname="shop"),
             subscriber.query("SELECT count(*) FROM pg_subscription"))
    assert after == before


def test_a_dropped_subscription_leaves_no_slot(clusters, tmp_path):
    publisher, subscriber, tls = clusters
    inv = inventory(tmp_path / "inv.yml", publisher, subscriber, tls)
    play(tmp_path, inv)
    assert publisher.query("SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'") == [(1,)]
    inv = inventory(tmp_path / "inv.yml", publisher, subscriber, tls, subscriptions=[
        {"name": "shop_sub", "db": "shop", "source": "pub", "publications": ["shop_pub"], "state": "absent"}])
    assert play(tmp_path, inv)["stats"]["sub"]["changed"] == 1
    assert subscriber.query("SELECT count(*) FROM pg_subscription") == [(0,)]
    assert publisher.query("SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'") == [(0,)]
    assert play(tmp_path, inv)["stats"]["sub"]["changed"] == 0


def test_a_publication_that_would_break_updates_is_refused(clusters, tmp_path):
    """FOR ALL TABLES over a table without a primary key (or replica identity) would make every
    UPDATE and DELETE on it fail: refused, naming the table; a table list or insert-only is fine.
    Such a table created after the publication is already published: a warning, not a refusal."""
    publisher, subscriber, tls = clusters
    publisher.create_database("ledger")
    publisher.query("CREATE TABLE no_key (at timestamptz, v int); CREATE TABLE with_key (id int PRIMARY KEY, v int);"
                    "INSERT INTO no_key VALUES (now(), 1)", dbname="ledger")
    refused = inventory(tmp_path / "inv.yml", publisher, subscriber, tls, subscriptions=[],
                        publications=[{"name": "ledger_all", "db": "ledger"}])
    report = play(tmp_path, refused, expect_rc=2)
    failed = [h for p in report["plays"] for t in p["tasks"] for h in t["hosts"].values() if h.get("failed")]
    assert "publication ledger_all in ledger would publish public.no_key: UPDATE and DELETE" in failed[0]["msg"]
    assert publisher.query("SELECT count(*) FROM pg_publication", dbname="ledger") == [(0,)]
    assert publisher.query("UPDATE no_key SET v = 2", dbname="ledger") is None  # writes still work

    fine = inventory(tmp_path / "inv.yml", publisher, subscriber, tls, subscriptions=[], publications=[
        {"name": "ledger_keyed", "db": "ledger", "tables": ["public.with_key"]},
        {"name": "ledger_inserts", "db": "ledger", "publish": ["insert", "truncate"]}])
    assert play(tmp_path, fine)["stats"]["pub"]["changed"] == 2  # the CONNECT grant, the publications (one task)
    assert publisher.query("SELECT pubname, puballtables, pubupdate FROM pg_publication ORDER BY 1", dbname="ledger") == [
        ("ledger_inserts", True, False), ("ledger_keyed", False, True)]
    assert publisher.query("UPDATE no_key SET v = 3", dbname="ledger") is None

    publisher.query("ALTER TABLE no_key REPLICA IDENTITY FULL", dbname="ledger")
    every = inventory(tmp_path / "inv.yml", publisher, subscriber, tls, subscriptions=[],
                      publications=[{"name": "ledger_all", "db": "ledger"}])
    assert play(tmp_path, every)["stats"]["pub"]["changed"] == 1
    publisher.query("CREATE TABLE later (v int)", dbname="ledger")  # FOR ALL TABLES takes it in
    report = play(tmp_path, every)
    assert report["stats"]["pub"]["changed"] == 0
    (warning,) = [h["msg"] for p in report["plays"] for t in p["tasks"] if t["task"]["name"].endswith("Warn about published tables without a replica identity")
                  for h in t["hosts"].values() if not h.get("skipped")]
    assert warning.startswith("WARNING: publication ledger_all in ledger publishes public.later: UPDATE and DELETE on them fail"), warning
