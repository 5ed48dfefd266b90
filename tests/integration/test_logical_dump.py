"""pgfleet-logical-dump (the pg_logical_dump role's script) against a real cluster and
moto's S3 over TLS: encrypted dumps uploaded, old ones pruned by the time in their name,
foreign objects kept, a dump restored from S3 into a new database, standbys skip."""

import datetime
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import boto3
import pytest

from pgcluster import PgCluster
from services import MotoS3, make_tls

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "pg_logical_dump", "files", "pgfleet-logical-dump")


@pytest.fixture(scope="module")
def s3():
    tls_dir = tempfile.mkdtemp(prefix="pgfleet-tls-", dir="/var/tmp")
    os.chmod(tls_dir, 0o755)
    tls = make_tls(tls_dir)
    server = MotoS3(tls, bucket="pgfleet-dumps")
    yield server
    server.stop()
    shutil.rmtree(tls_dir, ignore_errors=True)


def client(s3):
    return boto3.client("s3", endpoint_url=f"https://localhost:{s3.port}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing", verify=s3.tls["ca.crt"])


def settings(cluster, s3, work):
    with open(os.path.join(work, "pass"), "w", encoding="utf-8") as f:
        f.write("correct horse battery staple 42")
    cfg = dict(databases=["shop"], host=cluster.socket_dir, port=cluster.port, pg_bin=cluster.bindir,
               dir=os.path.join(work, "dumps"), keep_days=3, retention_days=30,
               passphrase_file=os.path.join(work, "pass"), metrics_dir=os.path.join(work, "metrics"),
               s3=dict(bucket=s3.bucket, prefix="pg1", region="us-east-1", endpoint_url=f"https://localhost:{s3.port}",
                       access_key="testing", secret_key="testing", ca_file=s3.tls["ca.crt"]))
    path = os.path.join(work, "dump.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return path, cfg


def createdb(cluster, name):
    conn = cluster.connect()  # autocommit; `with conn` would open a transaction block
    try:
        conn.cursor().execute("CREATE DATABASE %s" % name)
    finally:
        conn.close()


def run(config, *args):
    return subprocess.run([sys.executable, SCRIPT, "--config", config, *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def work():
    path = tempfile.mkdtemp(prefix="pgfleet-dump-test-", dir="/var/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_dump_is_encrypted_uploaded_pruned_and_restorable(pg, s3, work):
    createdb(pg, "shop")
    pg.query("CREATE TABLE orders AS SELECT g AS id, 'secret-order-' || g AS note FROM generate_series(1, 5000) g",
             dbname="shop")
    config, cfg = settings(pg, s3, work)
    s3c = client(s3)
    old = "pg1/shop/shop-%s.dump.gpg" % (datetime.datetime.utcnow() - datetime.timedelta(days=31)).strftime("%Y%m%dT%H%M%SZ")
    young = "pg1/shop/shop-%s.dump.gpg" % (datetime.datetime.utcnow() - datetime.timedelta(days=29)).strftime("%Y%m%dT%H%M%SZ")
    foreign = "pg1/shop/notes-from-an-operator.txt"
    for key in (old, young, foreign):
        s3c.put_object(Bucket=s3.bucket, Key=key, Body=b"x")

    out = run(config, "dump")
    assert out.returncode == 0, out.stderr
    # No gpg-agent outlives the run (a systemd oneshot would wait for it until its timeout).
    assert subprocess.run(["pgrep", "-f", "gpg-agent --homedir /tmp/pgfleet-gpg-"], check=False).returncode == 1
    (local,) = os.listdir(cfg["dir"])
    path = os.path.join(cfg["dir"], local)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, "rb") as f:
        data = f.read()
    assert not data.startswith(b"PGDMP") and b"secret-order-" not in data  # ciphertext, not a custom-format dump
    keys = {o["Key"] for o in s3c.list_objects_v2(Bucket=s3.bucket, Prefix="pg1/")["Contents"]}
    assert "pg1/shop/" + local in keys
    assert old not in keys, "a dump past the 30-day retention was kept"
    assert young in keys and foreign in keys
    with open(os.path.join(cfg["metrics_dir"], "pgfleet_logical_dump.prom"), encoding="utf-8") as f:
        assert 'pgfleet_logical_dump_last_success_timestamp_seconds{database="shop"}' in f.read()

    # Restore from S3 (the local copy removed) into a new database.
    os.remove(path)
    out = run(config, "restore", "--database", "shop", "--target", "shop_restored", "--s3-key", "pg1/shop/" + local)
    assert out.returncode == 0, out.stderr
    assert pg.query("SELECT count(*), max(note) FROM orders", dbname="shop_restored") == [(5000, "secret-order-999")]
    # An existing target is refused, and a wrong passphrase cannot decrypt.
    out = run(config, "restore", "--database", "shop", "--target", "shop_restored", "--s3-key", "pg1/shop/" + local)
    assert out.returncode == 1 and "database shop_restored exists" in out.stderr
    with open(cfg["passphrase_file"], "w", encoding="utf-8") as f:
        f.write("not the passphrase at all, sorry")
    out = run(config, "restore", "--database", "shop", "--target", "shop_again", "--s3-key", "pg1/shop/" + local)
    assert out.returncode == 1 and "cannot decrypt" in out.stderr
    assert pg.query("SELECT count(*) FROM pg_database WHERE datname = 'shop_again'") == [(0,)]


def run_metric(cfg):
    with open(os.path.join(cfg["metrics_dir"], "pgfleet_logical_dump_run.prom"), encoding="utf-8") as f:
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in f if not line.startswith("#")}


def test_a_failed_dump_is_recorded_at_once(pg, s3, work):
    config, cfg = settings(pg, s3, work)  # database shop does not exist yet
    out = run(config, "dump")
    assert out.returncode == 1 and "dump of shop failed" in out.stderr, out.stderr
    failed = run_metric(cfg)
    assert failed["pgfleet_logical_dump_last_run_success"] == 0
    assert time.time() - failed["pgfleet_logical_dump_last_run_timestamp_seconds"] < 60
    assert not os.path.exists(os.path.join(cfg["metrics_dir"], "pgfleet_logical_dump.prom")), "no success to report"
    createdb(pg, "shop")
    assert run(config, "dump").returncode == 0
    assert run_metric(cfg)["pgfleet_logical_dump_last_run_success"] == 1


def test_a_standby_dumps_nothing(pg, s3, work):
    createdb(pg, "shop")
    standby = PgCluster()
    try:
        standby.init_standby_of(pg).start()
        config, cfg = settings(standby, s3, work)
        out = run(config, "dump")
        assert out.returncode == 0, out.stderr
        assert "standby" in out.stdout
        assert not os.path.exists(cfg["dir"]) or os.listdir(cfg["dir"]) == []
    finally:
        standby.destroy()


def test_gpg_done_waits_for_an_agent_that_stops_late(tmp_path, monkeypatch):
    """gpgconf --kill only asks the agent to stop. An agent still alive when the script ends
    sits in the oneshot unit's cgroup, and systemd (cgroup v1 in a container) then waits out
    TimeoutStopSec and fails the run. A gpgconf that passes the request on one second late
    makes that race certain: gpg_done must still return only once the agent is gone."""
    loader = importlib.machinery.SourceFileLoader("pgfleet_logical_dump", SCRIPT)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    late = tmp_path / "bin"
    late.mkdir()
    (late / "gpgconf").write_text('#!/bin/sh\n( sleep 1; exec /usr/bin/gpgconf "$@" ) >/dev/null 2>&1 &\n', encoding="utf-8")
    (late / "gpgconf").chmod(0o755)
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple 42", encoding="utf-8")
    argv, home = module.gpg({"passphrase_file": str(passphrase)}, "--symmetric", "--output", str(tmp_path / "x.gpg"))
    subprocess.run(argv, input=b"secret", check=True, capture_output=True)
    agent = module.gpg_agent_pid(home)
    assert agent and os.path.exists("/proc/%d" % agent), "gpg started no agent to wait for"
    monkeypatch.setenv("PATH", "%s:%s" % (late, os.environ["PATH"]))
    module.gpg_done(home)
    assert not os.path.exists("/proc/%d" % agent), "gpg_done returned while the agent still ran"
    assert not os.path.exists(home)
