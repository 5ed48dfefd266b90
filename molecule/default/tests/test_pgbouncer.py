"""PgBouncer as an application sees it: TLS and scram only, users found by auth_query,
transaction pools to the primary, read-only pools spread over the replicas that survive
a replica going down, and a user list that holds no application secret."""

import concurrent.futures
import time

import pytest
from conftest import PG, psql, secret, wait_for

from fleet import hosts_of, https_get

BOUNCER_CA = "/etc/pgbouncer/root.crt"


@pytest.fixture(scope="module")
def bouncer():
    (host,) = hosts_of("pgbouncer")
    return host


def via_bouncer(bouncer, sql, db="profile_db", sslmode="verify-full", user="profile_service"):
    name = bouncer.backend.get_hostname()
    conninfo = f"host={name} port=6432 dbname={db} user={user} sslmode={sslmode} sslrootcert={BOUNCER_CA}"
    return bouncer.run("PGPASSWORD=%s psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s",
                       secret(f"pg_{user}_password"), conninfo, sql)


def console(bouncer, command):
    return bouncer.check_output("runuser -u postgres -- psql -XAtq -h /var/run/postgresql -p 6432 -d pgbouncer -c %s",
                                command)


def test_clients_log_in_over_tls_with_their_own_password(bouncer):
    ok = via_bouncer(bouncer, "SELECT current_user || ' ' || pg_is_in_recovery()")
    assert ok.rc == 0 and ok.stdout.strip() == "profile_service false", ok.stderr
    plain = via_bouncer(bouncer, "SELECT 1", sslmode="disable")
    assert plain.rc != 0, plain.stdout
    wrong = bouncer.run("PGPASSWORD=wrong psql -XAtq -d %s -c 'SELECT 1'",
                        f"host={bouncer.backend.get_hostname()} port=6432 dbname=profile_db user=profile_service "
                        f"sslmode=verify-full sslrootcert={BOUNCER_CA}")
    assert wrong.rc != 0 and "SASL authentication failed" in wrong.stderr, wrong.stderr


def test_superusers_and_the_lookup_user_cannot_log_in_through_it(bouncer):
    # The lookup user with its real password: only the hba file's reject line stops it.
    name = bouncer.backend.get_hostname()
    for user, password in (("postgres", "x"), ("pgbouncer_auth", secret("pgbouncer_auth_password"))):
        refused = bouncer.run("PGPASSWORD=%s psql -XAtq -d %s -c 'SELECT 1'", password,
                              f"host={name} port=6432 dbname=profile_db user={user} sslmode=require")
        assert refused.rc != 0 and "login rejected" in refused.stderr, (user, refused.stderr)


def test_the_console_refuses_network_logins_at_once(bouncer):
    # A user not in the user list once waited forever for an auth_query the console cannot
    # serve, holding a client slot without a password.
    name = bouncer.backend.get_hostname()
    started = time.monotonic()
    for user in ("nobody", "postgres", "profile_service"):
        refused = bouncer.run("PGPASSWORD=x PGCONNECT_TIMEOUT=10 psql -XAtq -d %s -c 'SHOW VERSION'",
                              f"host={name} port=6432 dbname=pgbouncer user={user} sslmode=require")
        assert refused.rc != 0 and "login rejected" in refused.stderr, (user, refused.stderr)
    assert time.monotonic() - started < 10
    clients = console(bouncer, "SHOW CLIENTS")
    assert "(nouser)" not in clients and "nobody" not in clients, clients
    # The refusals reach the AuthFailuresHigh alert's counter.
    assert bouncer.run("systemctl start pgfleet-auth-failures.service").rc == 0
    prom = bouncer.file("/var/lib/prometheus/node-exporter/pgfleet_auth_failures.prom").content_string
    (count,) = [line.split()[-1] for line in prom.splitlines() if line.startswith('pgfleet_auth_failures_total{service="pgbouncer"}')]
    assert int(count) >= 3, prom


def test_server_connections_are_tls_and_pooled_per_transaction(bouncer, primary):
    assert via_bouncer(bouncer, "SELECT 1").rc == 0
    pools = console(bouncer, "SHOW POOLS").splitlines()
    assert any(line.startswith("profile_db|profile_service|") and line.endswith("|transaction") for line in pools), pools
    address = bouncer.interface("eth0").addresses[0]
    counts = psql(primary, "SELECT count(*) FILTER (WHERE NOT s.ssl) || '/' || count(*) FROM pg_stat_activity a "
                           f"JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr = '{address}'")
    plain, total = map(int, counts.split("/"))
    assert plain == 0 and total >= 1, counts


def test_lookup_function_serves_only_ordinary_users(primary):
    as_lookup = "SET ROLE pgbouncer_auth; SELECT count(*) FROM pgbouncer.get_auth('{}')"
    assert psql(primary, as_lookup.format("profile_service"), db="profile_db") == "1"
    assert psql(primary, as_lookup.format("postgres"), db="profile_db") == "0"
    assert psql(primary, as_lookup.format("replicator"), db="profile_db") == "0"
    denied = primary.run("runuser -u postgres -- psql -XAtq -d profile_db -c %s",
                         "SET ROLE profile_service; SELECT * FROM pgbouncer.get_auth('postgres')")
    assert denied.rc != 0 and "permission denied" in denied.stderr, denied.stderr


def test_user_list_holds_only_the_lookup_user(bouncer):
    users = bouncer.file("/etc/pgbouncer/userlist.txt")
    assert users.mode == 0o600 and users.user == "postgres"
    names = [line.split()[0] for line in users.content_string.splitlines()]
    assert names == ['"pgbouncer_auth"', '"postgres"'], names
    assert secret("pg_profile_service_password") not in users.content_string


def haproxy_status(bouncer):
    """{server: UP|DOWN|...} of the replica listener, from HAProxy's stats socket."""
    script = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(b'show stat\\n'); print(s.makefile().read())")
    rows = [line.split(",") for line in bouncer.check_output("python3 -c %s", script).splitlines()]
    return {r[1]: r[17] for r in rows if len(r) > 17 and r[0] == "postgres_replicas" and r[1] not in ("FRONTEND", "BACKEND")}


def replica_addresses(bouncer, clients=4):
    """Server addresses seen by CLIENTS concurrent read-only sessions (each holds its
    server connection for a second, so the pool opens several)."""
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: via_bouncer(bouncer, "SELECT inet_server_addr() || ' ' || pg_is_in_recovery() "
                                                            "FROM pg_sleep(1)", db="profile_db_ro"), range(clients)))
    assert all(r.rc == 0 for r in runs), [r.stderr for r in runs]
    return {r.stdout.strip() for r in runs}


def test_read_only_pools_spread_over_the_replicas(bouncer, replicas):
    console(bouncer, "RECONNECT profile_db_ro")  # new server connections, placed by HAProxy now
    seen = replica_addresses(bouncer)
    assert all(s.endswith(" true") for s in seen) and len(seen) == len(replicas), seen
    write = via_bouncer(bouncer, "CREATE TEMP TABLE t (i int)", db="profile_db_ro")
    assert write.rc != 0 and "read-only transaction" in write.stderr, write.stderr


def test_read_only_pools_survive_a_replica_going_down(bouncer, primary, replicas):
    down = replicas[0]
    down.run_expect([0], f"systemctl stop {PG['service']}")
    try:
        # HAProxy marks it down after two failed checks a second apart.
        assert wait_for(lambda: haproxy_status(bouncer)[down.backend.get_hostname()] == "DOWN", timeout=10)
        seen = set()
        for _round in range(3):
            seen |= replica_addresses(bouncer)
        assert len(seen) == 1, seen
    finally:
        down.run_expect([0], f"systemctl start {PG['service']}")
        wait_for(lambda: psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                 == str(len(replicas)), timeout=60)


def exporter_metrics(bouncer, password=None, scheme="https"):
    """(status, /metrics) of the PgBouncer exporter, which has TLS and basic auth from the
    exporters role's web config."""
    password = secret("exporters_basic_auth_password") if password is None else password
    url = f"{scheme}://{bouncer.backend.get_hostname()}:9127/metrics"
    return https_get(bouncer, url, BOUNCER_CA, "prometheus:" + password)


def test_exporter_reports_the_pools_on_the_private_address_only(bouncer):
    (private,) = [a for a in bouncer.interface("eth0").addresses if ":" not in a]
    exporter = bouncer.service("pgfleet-pgbouncer-exporter")
    assert exporter.is_running and exporter.is_enabled
    assert bouncer.socket(f"tcp://{private}:9127").is_listening
    assert not bouncer.socket("tcp://0.0.0.0:9127").is_listening
    pid = bouncer.check_output("systemctl show -p MainPID --value pgfleet-pgbouncer-exporter")
    assert bouncer.check_output("ps -o user= -p %s", pid.strip()).strip() == "postgres"
    assert via_bouncer(bouncer, "SELECT 1").rc == 0
    status, text = exporter_metrics(bouncer)
    lines = text.splitlines()
    assert status == 200 and "pgbouncer_up 1.0" in lines
    assert exporter_metrics(bouncer, password="not-the-password")[0] == 401
    assert exporter_metrics(bouncer, scheme="http")[0] == 0  # TLS only
    assert any(line.startswith('pgbouncer_pools_cl_waiting{database="profile_db",pool_mode="transaction",'
                               'user="profile_service"}') for line in lines), lines
    assert "pgbouncer_config_max_client_conn 2000.0" in lines
    # A restart of PgBouncer (new address, port or file limit) leaves the exporter answering.
    bouncer.run_expect([0], "systemctl restart pgbouncer")
    assert wait_for(lambda: "pgbouncer_up 1.0" in exporter_metrics(bouncer)[1].splitlines(), timeout=10)
