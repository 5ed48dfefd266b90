"""pgfleet-auth-failures (the exporters role's log counter) against the logs of a real
PostgreSQL and a real PgBouncer: refused logins are counted, good ones are not, the counter
survives a rotated log, and a line still being written waits for its end."""

import os
import subprocess
import tempfile
import time

import psycopg2
import pytest

from pgcluster import free_port

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "exporters", "files", "pgfleet-auth-failures")


def refused_logins(port, attempts):
    for user, password in attempts:
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(host="127.0.0.1", port=port, dbname="postgres", user=user, password=password,
                             connect_timeout=5).close()


def counted_soon(work, logs, expected, timeout=20):
    """The server writes its log asynchronously to us: read until the count is reached."""
    deadline = time.monotonic() + timeout
    while (found := counted(work, *logs)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def counted(work, *logs):
    subprocess.run([SCRIPT, f"{work}/state.json", work, *logs], check=True)
    with open(f"{work}/pgfleet_auth_failures.prom", encoding="utf-8") as f:
        text = f.read()
    return {line.split('"')[1]: int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("pgfleet_auth_failures_total{")}


@pytest.fixture
def work():
    with tempfile.TemporaryDirectory(prefix="pgfleet-auth-") as path:
        yield path


@pytest.fixture
def server(pg_factory):
    cluster = pg_factory(tcp=True)
    with open(f"{cluster.datadir}/pg_hba.conf", "a", encoding="utf-8") as hba:
        hba.write("host postgres app 127.0.0.1/32 scram-sha-256\n")
    cluster.reload()
    cluster.query("CREATE ROLE app LOGIN PASSWORD 'right'")
    return cluster


def test_postgresql_refusals_are_counted_across_a_rotation(server, work):
    log = f"postgresql={server.logfile}"
    assert counted(work, log) == {"postgresql": 0}
    psycopg2.connect(host="127.0.0.1", port=server.port, dbname="postgres", user="app", password="right").close()
    # A wrong password, a role that does not exist, and a user no hba line admits.
    refused_logins(server.port, [("app", "wrong"), ("ghost", "x"), ("postgres", "x")])
    assert counted_soon(work, [log], {"postgresql": 3}) == {"postgresql": 3}
    assert counted(work, log) == {"postgresql": 3}, "a second read counted the same lines again"
    # copytruncate, as Debian's logrotate does for PostgreSQL's log: the file starts again.
    os.truncate(server.logfile, 0)
    refused_logins(server.port, [("app", "wrong")])
    assert counted_soon(work, [log], {"postgresql": 4}) == {"postgresql": 4}
    # A half-written line is read once it ends.
    with open(server.logfile, "ab") as f:
        f.write(b"2026-01-01 00:00:00 UTC [1] app@postgres FATAL:  password authentication")
    assert counted(work, log) == {"postgresql": 4}
    with open(server.logfile, "ab") as f:
        f.write(b' failed for user "app"\n')
    assert counted(work, log) == {"postgresql": 5}
    assert oct(os.stat(f"{work}/state.json").st_mode & 0o777) == "0o600"


def test_pgbouncer_refusals_are_counted(server, work):
    port = free_port()
    ini = f"{work}/pgbouncer.ini"
    with open(ini, "w", encoding="utf-8") as f:
        f.write(f"""[databases]
postgres = host=127.0.0.1 port={server.port} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pidfile = {work}/pgbouncer.pid
logfile = {work}/pgbouncer.log
auth_type = hba
auth_hba_file = {work}/hba.conf
auth_file = {work}/userlist.txt
""")
    with open(f"{work}/userlist.txt", "w", encoding="utf-8") as f:
        f.write('"app" "right"\n"blocked" "right"\n')
    with open(f"{work}/hba.conf", "w", encoding="utf-8") as f:
        f.write("host all blocked 0.0.0.0/0 reject\nhost all all 127.0.0.1/32 scram-sha-256\n")
    subprocess.run(["chown", "-R", "postgres:postgres", work], check=True)
    os.chmod(work, 0o755)
    subprocess.run(["runuser", "-u", "postgres", "--", "pgbouncer", "-d", ini], check=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{work}/pgbouncer.pid"):
            assert time.monotonic() < deadline, "PgBouncer did not start"
            time.sleep(0.1)
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False).returncode == 2:
            assert time.monotonic() < deadline, "PgBouncer did not listen"
            time.sleep(0.1)
        psycopg2.connect(host="127.0.0.1", port=port, dbname="postgres", user="app", password="right").close()
        refused_logins(port, [("app", "wrong"), ("nobody", "x"), ("blocked", "right")])
        logs = [f"pgbouncer={work}/pgbouncer.log", f"postgresql={server.logfile}"]
        assert counted_soon(work, logs, {"pgbouncer": 3, "postgresql": 0}) == {"pgbouncer": 3, "postgresql": 0}
    finally:
        subprocess.run(["pkill", "-f", f"pgbouncer -d {ini}"], check=False)


def test_bad_arguments_are_named(work):
    result = subprocess.run([SCRIPT, f"{work}/state.json", work, "mysql=/var/log/mysql.log"],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "unknown service mysql" in result.stderr
