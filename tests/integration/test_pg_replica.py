"""pg_replica against real PostgreSQL 15 clusters on this host.

One primary (TLS, scram, WAL archived to a pgBackRest posix repository) serves three
replicas: one cloned with pg_basebackup over TLS (verify-full), one restored from the
repository, and one cascading from the first. Promotion and the refusals use clusters
of their own.
"""

import json
import os
import stat
import tempfile
import time

import pytest

from modules import run_module
from pgcluster import PgCluster
from services import BackRestRepo, enable_ssl, make_tls

PASSWORD = "s3cret-Rep!ication"


def new_cluster(clusters, **kw):
    cluster = PgCluster(external_conf=True, **kw)
    clusters.append(cluster)
    return cluster


@pytest.fixture(scope="module")
def fleet():
    clusters, repos = [], []
    tls_dir = tempfile.mkdtemp(prefix="pgfleet-tls-", dir="/var/tmp")
    os.chmod(tls_dir, 0o755)
    try:
        tls = make_tls(tls_dir)
        os.chmod(tls["ca.crt"], 0o644)
        primary = new_cluster(clusters, tcp=True).init()
        enable_ssl(primary, tls)
        repo = BackRestRepo(primary)
        repos.append(repo)
        repo.attach()
        primary.start()
        primary.query("CREATE ROLE replicator LOGIN REPLICATION PASSWORD %s", (PASSWORD,))
        primary.query("CREATE TABLE t (id int PRIMARY KEY, note text)")
        repo.run("stanza-create")
        repo.run("--type=full", "backup")
        yield dict(primary=primary, repo=repo, tls=tls, clusters=clusters)
    finally:
        for cluster in clusters:
            cluster.destroy()
        for repo in repos:
            repo.destroy()
        import shutil
        shutil.rmtree(tls_dir, ignore_errors=True)


def replica_args(standby, primary, **kw):
    args = dict(data_dir=standby.datadir, config_dir=standby.confdir, log_file=standby.logfile,
                port=standby.port, unix_socket=standby.socket_dir, primary_host=primary.socket_dir,
                primary_port=primary.port, passfile=os.path.join(standby.base, "pgpass"), wait_timeout=60)
    args.update(kw)
    return args


def tls_args(fleet, standby, name, **kw):
    args = dict(primary_host="127.0.0.1", replication_password=PASSWORD, slot=name, application_name=name,
                ssl_mode="verify-full", ssl_rootcert=fleet["tls"]["ca.crt"])
    return replica_args(standby, fleet["primary"], **dict(args, **kw))


def wait_for_row(cluster, row_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cluster.query("SELECT note FROM t WHERE id = %s", (row_id,)):
            return cluster.query("SELECT note FROM t WHERE id = %s", (row_id,))[0][0]
        time.sleep(0.2)
    raise AssertionError(f"row {row_id} did not arrive on port {cluster.port}")


@pytest.fixture(scope="module")
def basebackup_replica(fleet):
    standby = new_cluster(fleet["clusters"])
    result = run_module("pg_replica", tls_args(fleet, standby, "replica_a"))
    assert not result.get("failed"), result["msg"]
    return standby, result


def test_basebackup_replica_over_verified_tls(fleet, basebackup_replica):
    standby, result = basebackup_replica
    primary = fleet["primary"]
    assert result["changed"] and result["action"] == "cloned"
    assert result["passfile_updated"]
    rep = result["replication"]
    assert rep["streaming"] and rep["in_recovery"] and rep["sender_host"] == "127.0.0.1"
    assert rep["slot_name"] == "replica_a" and rep["timeline"] == 1
    assert rep["replay_lag_bytes"] is not None and rep["replay_lag_bytes"] >= 0
    # The walsender serving it uses TLS; the slot was created and is in use.
    rows = primary.query("SELECT s.ssl, r.state FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
                         "WHERE r.application_name = 'replica_a'")
    assert rows == [(True, "streaming")]
    assert primary.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_a'") == [(True,)]
    assert standby.query("SHOW primary_conninfo")[0][0].count("sslmode=verify-full") == 1
    # The password lives only in the 0600 passfile: not in the result, nor in the standby's config.
    assert PASSWORD not in json.dumps(result)
    with open(os.path.join(standby.datadir, "postgresql.auto.conf"), encoding="utf-8") as f:
        assert PASSWORD not in f.read()
    assert stat.S_IMODE(os.stat(os.path.join(standby.base, "pgpass")).st_mode) == 0o600
    primary.query("INSERT INTO t VALUES (1, 'to replica a')")
    assert wait_for_row(standby, 1) == "to replica a"
    with pytest.raises(Exception, match="read-only transaction"):
        standby.query("INSERT INTO t VALUES (100, 'refused')")


def test_basebackup_replica_second_run_and_check_mode_change_nothing(fleet, basebackup_replica):
    standby = basebackup_replica[0]
    check = run_module("pg_replica", tls_args(fleet, standby, "replica_a"), check=True)
    assert not check["changed"] and check["action"] == "none", check
    again = run_module("pg_replica", tls_args(fleet, standby, "replica_a"))
    assert not again["changed"] and again["action"] == "none" and again["queries"] == [] and again["commands"] == []
    assert again["replication"]["streaming"]


def test_settings_change_re_points_without_a_new_copy(fleet, basebackup_replica):
    standby = basebackup_replica[0]
    marker = os.path.join(standby.datadir, "pgfleet-marker")  # a copy would remove it
    open(marker, "w").close()
    args = tls_args(fleet, standby, "replica_a", application_name="replica_a2")
    result = run_module("pg_replica", args)
    assert result["changed"] and result["action"] == "configured", result
    assert any(q.startswith("ALTER SYSTEM SET primary_conninfo") for q in result["queries"])
    assert result["diff"]["before"]["primary_conninfo"] != result["diff"]["after"]["primary_conninfo"]
    assert os.path.exists(marker)
    assert fleet["primary"].query("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'replica_a2'") == [(1,)]
    assert not run_module("pg_replica", args)["changed"]
    os.unlink(marker)


def test_cascading_replica_streams_from_the_first(fleet, basebackup_replica):
    first = basebackup_replica[0]
    primary = fleet["primary"]
    cascade = new_cluster(fleet["clusters"])
    args = replica_args(cascade, primary, upstream_host=first.socket_dir, upstream_port=first.port,
                        replication_user="replicator", slot="replica_c", application_name="replica_c")
    result = run_module("pg_replica", args)
    assert result["action"] == "cloned" and result["replication"]["streaming"], result
    assert result["replication"]["sender_port"] == first.port
    assert first.query("SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_c'") == [(True,)]
    assert first.query("SELECT application_name FROM pg_stat_replication") == [("replica_c",)]
    primary.query("INSERT INTO t VALUES (2, 'through the cascade')")
    assert wait_for_row(cascade, 2) == "through the cascade"
    assert not run_module("pg_replica", args)["changed"]


def test_replica_restored_from_pgbackrest(fleet):
    primary, repo = fleet["primary"], fleet["repo"]
    primary.query("INSERT INTO t VALUES (3, 'before the restore')")
    standby = new_cluster(fleet["clusters"])
    args = replica_args(standby, primary, method="pgbackrest", pgbackrest_stanza=repo.stanza,
                        pgbackrest_config=repo.config, slot="replica_b", application_name="replica_b")
    result = run_module("pg_replica", args)
    assert result["action"] == "cloned" and result["replication"]["streaming"], result
    assert any("--type=standby" in c and " restore" in c for c in result["commands"])
    with open(os.path.join(standby.datadir, "postgresql.auto.conf"), encoding="utf-8") as f:
        assert "archive-get" in f.read()  # restore_command from the repository
    primary.query("INSERT INTO t VALUES (4, 'after the restore')")
    assert wait_for_row(standby, 3) == "before the restore"
    assert wait_for_row(standby, 4) == "after the restore"
    assert not run_module("pg_replica", args)["changed"]


def test_promotion_and_the_old_primary_refused_without_rebuild(pg_factory):
    old = pg_factory(external_conf=True)
    old.query("CREATE TABLE t (id int PRIMARY KEY, note text)")
    new = PgCluster(external_conf=True)
    try:
        result = run_module("pg_replica", replica_args(new, old, replication_user="postgres"))
        assert result["replication"]["streaming"], result
        promote = dict(data_dir=new.datadir, state="promoted", port=new.port, unix_socket=new.socket_dir)
        assert run_module("pg_replica", promote, check=True)["changed"]
        result = run_module("pg_replica", promote)
        assert result["changed"] and result["action"] == "promoted"
        assert result["replication"]["timeline"] == 2 and not result["replication"]["in_recovery"]
        assert not run_module("pg_replica", promote)["changed"]
        new.query("INSERT INTO t VALUES (1, 'written on the new primary')")

        # The old primary is still running and writable: never wiped without rebuild.
        back = replica_args(old, new, replication_user="postgres")
        refused = run_module("pg_replica", back)
        assert refused["failed"] and "running primary" in refused["msg"] and "rebuild=true" in refused["msg"]
        assert old.query("SELECT pg_is_in_recovery()") == [(False,)]
        rebuilt = run_module("pg_replica", dict(back, rebuild=True))
        assert rebuilt["action"] == "rebuilt" and rebuilt["replication"]["streaming"], rebuilt
        assert rebuilt["replication"]["timeline"] == 2
        assert old.query("SELECT note FROM t") == [("written on the new primary",)]
        assert not run_module("pg_replica", dict(back, rebuild=True))["changed"]
    finally:
        new.destroy()


def test_a_standby_past_the_new_timelines_fork_is_refused_without_rebuild(pg_factory):
    """After a promotion (or a point-in-time restore) the other standby may have replayed WAL
    the new primary's timeline does not have: it can never stream from it."""
    old = pg_factory(external_conf=True)
    old.query("CREATE TABLE t (id int PRIMARY KEY, note text)")
    new, other = PgCluster(external_conf=True), PgCluster(external_conf=True)
    try:
        for standby in (new, other):
            assert run_module("pg_replica", replica_args(standby, old, replication_user="postgres"))["replication"]["streaming"]
        run_module("pg_replica", dict(data_dir=new.datadir, state="promoted", port=new.port, unix_socket=new.socket_dir))
        old.query("INSERT INTO t SELECT g, 'old timeline' FROM generate_series(1, 1000) g")  # only 'other' replays it
        wait_for_row(other, 1000)
        follow = replica_args(other, new, replication_user="postgres")
        refused_result = run_module("pg_replica", follow)
        assert refused_result["failed"], refused_result
        assert "past" in refused_result["msg"] and "timeline 2 forked" in refused_result["msg"], refused_result["msg"]
        assert other.query("SELECT count(*) FROM t") == [(1000,)]  # left alone
        rebuilt = run_module("pg_replica", dict(follow, rebuild=True))
        assert rebuilt["action"] == "rebuilt" and rebuilt["replication"]["streaming"], rebuilt
        assert rebuilt["replication"]["timeline"] == 2 and other.query("SELECT count(*) FROM t") == [(0,)]
    finally:
        new.destroy()
        other.destroy()


def test_a_clone_of_a_restored_primary_does_not_inherit_its_recovery_target(pg_factory):
    """A primary restored to a point in time keeps pgBackRest's recovery target in its
    postgresql.auto.conf; a standby cloned from it must not stop there and promote itself."""
    restored = pg_factory(external_conf=True)
    restored.query("CREATE TABLE t (id int PRIMARY KEY, note text)")
    conn = restored.connect()  # autocommit: ALTER SYSTEM refuses a transaction block
    try:
        for setting in ("recovery_target_time = '2001-01-01 00:00:00+00'", "recovery_target_action = 'promote'"):
            conn.cursor().execute("ALTER SYSTEM SET " + setting)
    finally:
        conn.close()
    standby = PgCluster(external_conf=True)
    try:
        result = run_module("pg_replica", replica_args(standby, restored, replication_user="postgres"))
        assert result["replication"]["streaming"], result
        with open(os.path.join(standby.datadir, "postgresql.auto.conf"), encoding="utf-8") as f:
            assert "recovery_target" not in f.read()
        restored.query("INSERT INTO t SELECT g, 'after the target' FROM generate_series(1, 50) g")
        wait_for_row(standby, 50)
        assert standby.query("SELECT pg_is_in_recovery()") == [(True,)]
    finally:
        standby.destroy()


@pytest.fixture
def target(fleet):
    return new_cluster(fleet["clusters"])


def refused(result):
    assert result.get("failed"), result
    return result["msg"]


def test_unreachable_primary(fleet, target):
    args = tls_args(fleet, target, "replica_x", primary_port=1, connect_timeout=3)
    msg = refused(run_module("pg_replica", args))
    assert "cannot open a replication connection to 127.0.0.1:1" in msg
    assert not os.path.exists(target.datadir)


def test_wrong_password_is_refused_and_never_echoed(fleet, target):
    args = tls_args(fleet, target, "replica_x")
    args["replication_password"] = "not-the-Secret-42"
    result = run_module("pg_replica", args)
    assert "password authentication failed" in refused(result)
    assert "not-the-Secret-42" not in json.dumps(result)
    assert not os.path.exists(target.datadir) and not os.path.exists(args["passfile"])


def test_missing_slot_without_creation(fleet, target):
    msg = refused(run_module("pg_replica", tls_args(fleet, target, "no_such_slot", create_slot=False)))
    assert "slot 'no_such_slot' does not exist" in msg and "create_slot is false" in msg
    assert fleet["primary"].query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'no_such_slot'") == [(0,)]


def test_foreign_data_directory_is_left_alone(fleet, target):
    os.makedirs(target.datadir)
    with open(os.path.join(target.datadir, "precious.txt"), "w", encoding="utf-8") as f:
        f.write("keep me")
    msg = refused(run_module("pg_replica", tls_args(fleet, target, "replica_x")))
    assert "not a PostgreSQL data directory" in msg and "precious.txt" in msg and "rebuild=true" in msg
    assert os.listdir(target.datadir) == ["precious.txt"]


def test_other_system_identifier_is_left_alone(fleet):
    other = new_cluster(fleet["clusters"]).init(fresh=True).start()
    other.query("CREATE TABLE its_own (id int)")
    msg = refused(run_module("pg_replica", tls_args(fleet, other, "replica_x")))
    primary_id = fleet["primary"].query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    own_id = other.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert "another PostgreSQL system" in msg and primary_id in msg and own_id in msg
    assert other.query("SELECT count(*) FROM its_own") == [(0,)]


@pytest.mark.parametrize("key, value, message", [
    ("slot", "Bad-Slot", "slot: 'Bad-Slot' is not a valid replication slot name"),
    ("application_name", "a b'c", "application_name: \"a b'c\" may hold only"),
    ("primary_port", 70000, "primary_port: 70000 is not a TCP port"),
    ("os_user", "no_such_user_x", "os_user 'no_such_user_x' does not exist"),
])
def test_bad_parameters(fleet, target, key, value, message):
    msg = refused(run_module("pg_replica", dict(tls_args(fleet, target, "replica_x"), **{key: value})))
    assert message in msg
    assert not os.path.exists(target.datadir)


def test_a_standby_named_as_the_primary_is_refused(basebackup_replica, target):
    standby = basebackup_replica[0]
    msg = refused(run_module("pg_replica", replica_args(target, standby, slot="replica_x")))
    assert f"primary_host {standby.socket_dir}:{standby.port} is a standby" in msg and "upstream_host" in msg
    assert not os.path.exists(target.datadir)
    assert standby.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replica_x'") == [(0,)]
