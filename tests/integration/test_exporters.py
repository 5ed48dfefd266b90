"""Debian's postgres_exporter and node_exporter as the exporters role runs them: the role's
custom queries against a real primary and streaming standby, the role's web configuration
(TLS and bcrypt basic auth), and every metric name the alert rules use from these two."""

import base64
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import jinja2
import pytest
from passlib.hash import bcrypt

from pgcluster import PgCluster, free_port
from services import make_tls

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "exporters")
RULES = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "monitoring", "templates", "pgfleet-alerts.yml.j2")
PASSWORD = "scrape-password-for-tests-0123"


class Exporter:
    """One exporter process with the role's web config, scraped over TLS with basic auth."""

    def __init__(self, argv, env, tls, work):
        self.port = free_port()
        web = os.path.join(work, "web-%d.yml" % self.port)
        with open(os.path.join(ROLE, "templates", "web-config.yml.j2"), encoding="utf-8") as f:
            jenv = jinja2.Environment()
            jenv.filters["bool"] = bool
            text = jenv.from_string(f.read()).render(
                ansible_managed="test", exporters_tls=True, exporters_web_cert=work + "/exporter.crt", exporters_web_key=work + "/exporter.key",
                exporters_basic_auth_user="prometheus",
                exporters_basic_auth_hash=bcrypt.using(rounds=10).hash(PASSWORD))
        with open(web, "w", encoding="utf-8") as f:
            f.write(text)
        self.ca = tls["ca.crt"]
        self.proc = subprocess.Popen([*argv, "--web.listen-address=127.0.0.1:%d" % self.port, "--web.config.file=" + web],
                                     env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def get(self, user="prometheus", password=PASSWORD, scheme="https"):
        request = urllib.request.Request("%s://localhost:%d/metrics" % (scheme, self.port))
        if user:
            token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        context = ssl.create_default_context(cafile=self.ca)
        with urllib.request.urlopen(request, context=context if scheme == "https" else None, timeout=10) as r:
            return r.read().decode()

    def metrics(self):
        deadline = time.monotonic() + 20
        while True:
            try:
                return self.get()
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the exporter never answered"
                time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def value(text, name, **labels):
    """The sample NAME{LABELS...} (a subset of its labels) in the exposition TEXT, or None."""
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def until(predicate, failure, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


def rule_metrics(prefixes):
    with open(RULES, encoding="utf-8") as f:
        names = set(re.findall(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b", "\n".join(l for l in f if "expr" in l or l.startswith("          "))))
    return {n for n in names if n.startswith(prefixes)}


@pytest.fixture(scope="module")
def work():
    path = tempfile.mkdtemp(prefix="pgfleet-exporters-", dir="/var/tmp")
    os.chmod(path, 0o755)
    tls = make_tls(path)
    for kind in ("crt", "key"):  # the names the role's web config uses
        shutil.copy(tls["server." + kind], os.path.join(path, "exporter." + kind))
    yield path, tls
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet():
    primary = PgCluster().init()
    primary.append_conf("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
                        "archive_mode = on\narchive_command = '/bin/false'\n")
    primary.start()
    standby = PgCluster()
    try:
        primary.query("CREATE EXTENSION pg_stat_statements")
        primary.query("CREATE ROLE prometheus LOGIN IN ROLE pg_monitor")
        primary.query("SELECT pg_create_physical_replication_slot('pg2')")
        primary.query("SELECT pg_create_physical_replication_slot('pg3')")  # a replica that is gone
        standby.init_standby_of(primary)
        standby.append_conf("primary_slot_name = 'pg2'\n")
        standby.start()
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def postgres_exporter(cluster, work):
    path, tls = work
    dsn = "host=%s port=%d user=prometheus dbname=postgres sslmode=disable" % (cluster.socket_dir, cluster.port)
    return Exporter(["prometheus-postgres-exporter",
                     "--extend.query-path=" + os.path.join(ROLE, "files", "postgres-queries.yml")],
                    {"DATA_SOURCE_NAME": dsn}, tls, path)


def test_postgres_exporter_on_a_primary(fleet, work):
    primary = fleet[0]
    primary.query("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    primary.query("SELECT pg_switch_wal()")  # the archiver tries, and /bin/false fails it
    for _call in range(3):
        primary.query("SELECT pg_sleep(0.3)")
    # A password typed by hand is tracked (utility statements keep their literals) and slow
    # enough for the top 20, but never becomes a label.
    primary.query("CREATE ROLE typed_by_hand LOGIN PASSWORD 'hunter2-plaintext'")
    assert primary.query("SELECT count(*) FROM pg_stat_statements WHERE query ~ 'hunter2'")[0][0] == 1
    until(lambda: primary.query("SELECT failed_count FROM pg_stat_archiver")[0][0] > 0, "the archiver never tried")
    exporter = postgres_exporter(primary, work)
    try:
        text = exporter.metrics()
        assert value(text, "pg_up") == 1 and value(text, "pg_exporter_last_scrape_error") == 0
        assert value(text, "pgfleet_replica_in_recovery") == 0 and value(text, "pgfleet_replica_lag_seconds") == 0
        assert value(text, "pgfleet_replication_connected_replicas") == 1
        assert value(text, "pgfleet_replication_physical_slots") == 2
        assert value(text, "pgfleet_replication_slot_active", slot_name="pg2") == 1
        assert value(text, "pgfleet_replication_slot_active", slot_name="pg3") == 0
        assert value(text, "pgfleet_archiver_failing") == 1 and value(text, "pgfleet_archiver_failed_count") >= 1
        sleep = [line for line in text.splitlines() if line.startswith("pgfleet_statement_p95_seconds") and "pg_sleep" in line]
        assert len(sleep) == 1, sleep
        assert 0.29 <= float(sleep[0].rsplit(" ", 1)[1]) < 1
        assert value(text, "pgfleet_statement_calls", query="SELECT pg_sleep($1)") == 3
        statements = [line for line in text.splitlines() if line.startswith("pgfleet_statement_calls")]
        assert len(statements) > 3 and not [line for line in statements if "hunter2" in line], statements
        # Everything the alert rules read from postgres_exporter, it has.
        for name in rule_metrics(("pg_", "pgfleet_replica", "pgfleet_archiver", "pgfleet_statement")):
            assert re.search(r"^%s[{ ]" % name, text, re.M), name
    finally:
        exporter.stop()


def test_postgres_exporter_on_a_standby_reports_its_lag(fleet, work):
    primary, standby = fleet
    primary.query("CREATE TABLE lag_probe (id int)")
    until(lambda: standby.query("SELECT count(*) FROM pg_class WHERE relname = 'lag_probe'")[0][0] == 1,
          "the standby never replayed")
    exporter = postgres_exporter(standby, work)
    try:
        text = exporter.metrics()
        assert value(text, "pgfleet_replica_in_recovery") == 1 and value(text, "pgfleet_replica_lag_seconds") == 0
        standby.query("SELECT pg_wal_replay_pause()")
        time.sleep(1.5)
        primary.query("INSERT INTO lag_probe VALUES (1)")
        # received but not replayed: the lag is the age of the last replayed commit
        until(lambda: (value(exporter.get(), "pgfleet_replica_lag_seconds") or 0) >= 1.5,
              "the paused standby never reported its lag")
        text = exporter.get()
        assert value(text, "pgfleet_replication_physical_slots") == 0
        standby.query("SELECT pg_wal_replay_resume()")
    finally:
        exporter.stop()


def test_web_config_needs_tls_and_the_password(fleet, work):
    exporter = postgres_exporter(fleet[0], work)
    try:
        exporter.metrics()
        for user, password in ((None, None), ("prometheus", "wrong-password"), ("someone", PASSWORD)):
            with pytest.raises(urllib.error.HTTPError) as e:
                exporter.get(user=user, password=password)
            assert e.value.code == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            exporter.get(scheme="http")
    finally:
        exporter.stop()


def test_node_exporter_with_textfile_metrics(work):
    path, tls = work
    textfile = tempfile.mkdtemp(prefix="textfile-", dir=path)
    with open(os.path.join(textfile, "pgbackrest.prom"), "w", encoding="utf-8") as f:
        f.write('pgbackrest_backup_last_timestamp_seconds{stanza="main",type="full"} 1700000000\n')
    exporter = Exporter(["prometheus-node-exporter", "--collector.textfile.directory=" + textfile], {}, tls, path)
    try:
        text = exporter.metrics()
        assert value(text, "pgbackrest_backup_last_timestamp_seconds", stanza="main", type="full") == 1.7e9
        assert value(text, "node_textfile_scrape_error") == 0
        for name in rule_metrics(("node_",)):
            assert re.search(r"^%s[{ ]" % name, text, re.M), name
    finally:
        exporter.stop()
