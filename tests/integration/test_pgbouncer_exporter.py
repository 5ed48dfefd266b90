"""pgfleet-pgbouncer-exporter (the pgbouncer role's exporter) against a real PgBouncer 1.18
in front of a real cluster: counters follow the traffic, a client queued behind a full
pool shows as waiting, the configured limits are exported, and a PgBouncer that stops
and comes back is reported down then up without restarting the exporter."""

import base64
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

from pgcluster import PgCluster, free_port
from services import make_tls

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "pgbouncer", "files",
                      "pgfleet-pgbouncer-exporter")


class Bouncer:
    """PgBouncer run as postgres, its socket and files in a scratch directory."""

    def __init__(self, cluster):
        self.dir = tempfile.mkdtemp(prefix="pgfleet-bouncer-", dir="/var/tmp")
        self.port = free_port()
        with open(f"{self.dir}/pgbouncer.ini", "w", encoding="utf-8") as f:
            f.write(f"""[databases]
shop = host={cluster.socket_dir} port={cluster.port} dbname=postgres pool_size=2
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir = {self.dir}
pidfile = {self.dir}/pgbouncer.pid
logfile = {self.dir}/pgbouncer.log
auth_type = trust
auth_file = {self.dir}/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 77
""")
        with open(f"{self.dir}/userlist.txt", "w", encoding="utf-8") as f:
            f.write('"postgres" ""\n')
        subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)

    def start(self):
        subprocess.run(["runuser", "-u", "postgres", "--", "pgbouncer", "-d", f"{self.dir}/pgbouncer.ini"], check=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{self.dir}/.s.PGSQL.{self.port}"):
            assert time.monotonic() < deadline, "PgBouncer did not open its socket"
            time.sleep(0.1)

    def stop(self):
        subprocess.run(["pkill", "-f", f"pgbouncer -d {self.dir}/pgbouncer.ini"], check=False)
        deadline = time.monotonic() + 10
        while os.path.exists(f"{self.dir}/.s.PGSQL.{self.port}"):
            assert time.monotonic() < deadline, "PgBouncer did not stop"
            time.sleep(0.1)

    def connect(self):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="shop", user="postgres")
        conn.autocommit = True
        return conn


@pytest.fixture(scope="module")
def fleet():
    cluster = PgCluster().init().start()
    bouncer = Bouncer(cluster)
    bouncer.start()
    web = free_port()
    # A copy postgres can read wherever the checkout lives (a mktemp clone is root-only).
    script = shutil.copy(SCRIPT, bouncer.dir)
    os.chmod(script, 0o755)
    exporter = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", "/usr/bin/python3", script, "--web-address", "127.0.0.1",
         "--web-port", str(web), "--pgbouncer-socket-dir", bouncer.dir, "--pgbouncer-port", str(bouncer.port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=2).close()
            break
        except OSError:
            assert exporter.poll() is None, exporter.stdout.read()
            assert time.monotonic() < deadline, "exporter did not answer"
            time.sleep(0.2)
    yield bouncer, web
    exporter.terminate()
    bouncer.stop()
    cluster.destroy()
    subprocess.run(["rm", "-rf", bouncer.dir], check=False)


def scrape(web):
    """{'name{labels}': value} of one scrape (the exposition format's sample lines)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def pool(name, database="shop", user="postgres", mode="transaction"):
    return f'pgbouncer_pools_{name}{{database="{database}",pool_mode="{mode}",user="{user}"}}'


def test_traffic_and_limits_are_exported(fleet):
    bouncer, web = fleet
    before = scrape(web)
    assert before["pgbouncer_up"] == 1
    assert before["pgbouncer_config_max_client_conn"] == 77
    assert before['pgbouncer_databases_pool_size{database="shop"}'] == 2
    conn = bouncer.connect()
    with conn.cursor() as cur:
        for _transaction in range(25):
            cur.execute("SELECT pg_sleep(0.001)")
    conn.close()
    after = scrape(web)
    key = 'pgbouncer_stats_transactions_total{database="shop"}'
    assert after[key] - before.get(key, 0) >= 25, (before.get(key), after[key])
    assert after['pgbouncer_stats_query_seconds_total{database="shop"}'] > 0.02


def test_a_client_queued_behind_a_full_pool_is_waiting(fleet):
    bouncer, web = fleet
    holders = [bouncer.connect(), bouncer.connect()]
    for conn in holders:  # an open transaction keeps its server connection in transaction pooling
        conn.autocommit = False
        conn.cursor().execute("SELECT 1")
    queued = bouncer.connect()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (queued.cursor().execute("SELECT 1"), done.set()))
    thread.start()
    try:
        time.sleep(1.2)
        samples = scrape(web)
        assert samples[pool("sv_active")] == 2 and samples[pool("cl_waiting")] == 1, samples
        assert samples[pool("client_maxwait_seconds")] >= 1
        assert not done.is_set()
    finally:
        for conn in holders:
            conn.rollback()
            conn.close()
        thread.join(10)
        queued.close()
    assert done.is_set()
    assert scrape(web)[pool("cl_waiting")] == 0


def test_pgbouncer_down_then_back_is_seen_without_an_exporter_restart(fleet):
    bouncer, web = fleet
    bouncer.stop()
    try:
        down = scrape(web)
        assert down["pgbouncer_up"] == 0 and not any(k.startswith("pgbouncer_pools_") for k in down)
    finally:
        bouncer.start()
    assert scrape(web)["pgbouncer_up"] == 1


def test_web_config_gives_tls_and_basic_auth(fleet, tmp_path):
    """The exporters role's web configuration (exporter-toolkit's format): TLS, a bcrypt user,
    and a changed file takes effect without a restart."""
    from passlib.hash import bcrypt  # pylint: disable=import-outside-toplevel

    bouncer = fleet[0]
    tls = make_tls(str(tmp_path))
    for name in ("server.crt", "server.key"):
        shutil.copy(tls[name], bouncer.dir)
    web_config = os.path.join(bouncer.dir, "web.yml")

    def write_config(password):
        with open(web_config, "w", encoding="utf-8") as f:
            f.write(f"tls_server_config:\n  cert_file: {bouncer.dir}/server.crt\n  key_file: {bouncer.dir}/server.key\n"
                    f"basic_auth_users:\n  prometheus: {bcrypt.using(rounds=10).hash(password)}\n")
        subprocess.run(["chown", "-R", "postgres:postgres", bouncer.dir], check=True)

    write_config("first-password-0123456789")
    port = free_port()
    exporter = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", "/usr/bin/python3", os.path.join(bouncer.dir, os.path.basename(SCRIPT)),
         "--web-address", "127.0.0.1", "--web-port", str(port), "--pgbouncer-socket-dir", bouncer.dir,
         "--pgbouncer-port", str(bouncer.port), "--web-config", web_config],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = ssl.create_default_context(cafile=tls["ca.crt"])

    def get(password, scheme="https"):
        request = urllib.request.Request(f"{scheme}://localhost:{port}/metrics")
        if password:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode())
        with urllib.request.urlopen(request, context=context if scheme == "https" else None, timeout=5) as answer:
            return answer.read().decode()

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                text = get("first-password-0123456789")
                break
            except urllib.error.URLError:
                assert exporter.poll() is None, exporter.stdout.read()
                assert time.monotonic() < deadline, "exporter did not answer"
                time.sleep(0.2)
        # What the alert rules read from this exporter is there.
        for name in ("pgbouncer_up", "pgbouncer_lists_used_clients", "pgbouncer_lists_login_clients",
                     "pgbouncer_config_max_client_conn", "pgbouncer_pools_client_maxwait_seconds"):
            assert f"\n{name}" in text, name
        for password in (None, "wrong-password"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                get(password)
            assert refused.value.code == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            get("first-password-0123456789", scheme="http")
        write_config("second-password-0123456789")
        with pytest.raises(urllib.error.HTTPError):
            get("first-password-0123456789")
        assert "pgbouncer_up 1.0" in get("second-password-0123456789")
    finally:
        exporter.terminate()
