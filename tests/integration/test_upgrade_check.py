"""playbooks/upgrade_check.yml between two real clusters on this host (both PostgreSQL 15:
a move to another cluster of the same major version passes the version check; the downgrade
refusal needs two versions, which this host does not have). It refuses, naming each problem
in one message, what logical replication would lose or break, and changes nothing."""

import json
import os
import subprocess

import pytest
import yaml

from pgcluster import PgCluster, free_port


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def clusters():
    source, target = PgCluster().init(), PgCluster().init().start()
    try:
        source.append_conf("wal_level = logical\n")  # what site.yml sets once a publication is declared
        source.start()
        for name in ("shop", "ledger"):
            source.create_database(name)
        source.query("CREATE TABLE orders (id bigint PRIMARY KEY, note text); INSERT INTO orders VALUES (1, 'a')", dbname="shop")
        source.query("CREATE TABLE entries (id bigint PRIMARY KEY); CREATE TABLE no_key (at timestamptz, v int);"
                     "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY); SELECT lo_create(0)", dbname="ledger")
        target.create_database("shop")  # as site.yml leaves a service database: empty
        target.create_database("ledger")
        target.query("CREATE TABLE stale (id int PRIMARY KEY)", dbname="ledger")
        yield source, target
    finally:
        target.destroy()
        source.destroy()


def run(tmp_path, source, target, *extra, source_port=None, expect_rc=0):
    # The host's python3 (Debian's psycopg2, as on a fleet host): postgres cannot run the venv's.
    common = dict(ansible_connection="local", ansible_python_interpreter="/usr/bin/python3", ansible_become_method="su")
    hosts = {"src": dict(common, pg_socket_dir=source.socket_dir, pg_port=source_port or source.port,
                         pg_databases=[{"name": "shop"}, {"name": "ledger"}],
                         pg_publications=[{"name": "shop_pub", "db": "shop"}, {"name": "ledger_pub", "db": "ledger"}]),
             "tgt": dict(common, pg_socket_dir=target.socket_dir, pg_port=target.port, pg_databases=[{"name": "shop"}])}
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"postgres": {"hosts": hosts}}}}))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", str(inv), os.path.join(ROOT, "playbooks", "upgrade_check.yml"), *extra],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == expect_rc, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert all(s["changed"] == 0 for s in report["stats"].values()), report["stats"]
    verdicts = [h for p in report["plays"] for t in p["tasks"] if t["task"]["name"].endswith(" : Refuse an upgrade that would lose or break data")
                for h in t["hosts"].values()]
    return report, verdicts


def catalog(cluster):
    return [cluster.query("SELECT count(*) FROM pg_class", dbname=db) for db in ("postgres", "shop", "ledger")]


def test_a_move_that_can_be_made_passes(clusters, tmp_path):
    source, target = clusters
    _report, (verdict,) = run(tmp_path, source, target, "-e", "upgrade_source=src", "-e", "upgrade_target=tgt",
                              "-e", json.dumps({"upgrade_databases": ["shop"]}))
    assert not verdict.get("failed") and verdict["msg"] == "src (PostgreSQL 15) -> tgt (PostgreSQL 15): shop can move", verdict


def test_every_problem_is_named_at_once_and_nothing_changes(clusters, tmp_path):
    source, target = clusters
    before = catalog(source), catalog(target)
    # upgrade_databases unset: the source's pg_databases (shop, ledger).
    _report, (verdict,) = run(tmp_path, source, target, "-e", "upgrade_source=src", "-e", "upgrade_target=tgt", expect_rc=2)
    msg = verdict["msg"]
    assert verdict["failed"] and msg.startswith("src -> tgt refused, nothing was changed: "), msg
    for problem in ("ledger: tables without primary key or replica identity: public.no_key",
                    "ledger: unlogged tables (not replicated): public.scratch",
                    "ledger: 1 large objects (not replicated)",
                    "the target's database ledger is not empty: public.stale"):
        assert problem in msg, (problem, msg)
    assert "shop" not in msg.split("refused")[1], msg  # shop has none of these
    assert (catalog(source), catalog(target)) == before

    _report, (verdict,) = run(tmp_path, source, target, "-e", "upgrade_source=src", "-e", "upgrade_target=tgt",
                              "-e", json.dumps({"upgrade_databases": ["shop", "nowhere"]}), expect_rc=2)
    assert 'database nowhere cannot be read on the source: ' in verdict["msg"] and 'does not exist' in verdict["msg"], verdict["msg"]
    assert "the source declares no publication of all tables of nowhere (pg_publications: {name: nowhere_pub, db: nowhere})" in verdict["msg"]


def test_a_source_without_logical_wal_and_a_target_with_tables_are_refused(clusters, tmp_path):
    source, target = clusters
    # The other way round: tgt runs wal_level=replica and declares no publication; src's shop has tables.
    _report, (verdict,) = run(tmp_path, source, target, "-e", "upgrade_source=tgt", "-e", "upgrade_target=src", expect_rc=2)
    for problem in ("the source runs wal_level=replica: declare its publications (pg_publications) and run site.yml",
                    "the source declares no publication of all tables of shop",
                    "the target's database shop is not empty: public.orders"):
        assert problem in verdict["msg"], (problem, verdict["msg"])


def test_a_source_that_cannot_be_read_is_named(clusters, tmp_path):
    source, target = clusters
    _report, (verdict,) = run(tmp_path, source, target, "-e", "upgrade_source=src", "-e", "upgrade_target=tgt",
                              source_port=free_port(), expect_rc=2)
    assert "the source src cannot be read: " in verdict["msg"], verdict["msg"]


def test_a_target_that_is_the_source_is_refused_before_reading_either(clusters, tmp_path):
    source, target = clusters
    report, verdicts = run(tmp_path, source, target, "-e", "upgrade_source=src", "-e", "upgrade_target=src", expect_rc=2)
    assert verdicts == []
    (check,) = [h for p in report["plays"] for t in p["tasks"] if t["task"]["name"] == "Check the survey's answers"
                for h in t["hosts"].values()]
    assert check["failed"] and "upgrade_target 'src'" in check["msg"], check
