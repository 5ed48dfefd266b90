"""The PostgreSQL servers as a DBA would check them: TLS-only network access, tuning
from the host, slow-query visibility, audit, session timeouts, pre-checks."""

import json
import re

from conftest import PG, converge, hosts_of, podman_hosts, psql, secret, wait_for

testinfra_hosts = podman_hosts("postgres")

LOG = f"/var/log/postgresql/postgresql-{PG['version']}-main.log"
ROOT_CERT = f"{PG['config_dir']}/root.crt"


def network_psql(client, server, sslmode, sql="SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):
    """psql from CLIENT to SERVER over the network as a service user to its database (scram)."""
    conninfo = f"host={server} dbname=profile_db user=profile_service sslmode={sslmode} sslrootcert={ROOT_CERT}"
    return client.run("PGPASSWORD=%s psql -XAtq -d %s -c %s", secret("pg_profile_service_password"), conninfo, sql)


def test_network_clients_must_use_tls(primary, replicas):
    server = primary.backend.get_hostname()
    plain = network_psql(replicas[0], server, "disable")
    assert plain.rc != 0 and "no encryption" in plain.stderr, plain.stderr
    verified = network_psql(replicas[0], server, "verify-full")
    assert verified.rc == 0 and verified.stdout.strip() == "t", verified.stderr


def test_replication_streams_over_tls(primary, replicas):
    assert psql(primary, "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_replication r "
                         "JOIN pg_stat_ssl s USING (pid)") == f"{len(replicas)}/{len(replicas)}"


def test_tls_settings_and_hba_have_no_plain_host_lines(host):
    assert psql(host, "SHOW ssl") == "on" and psql(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    rules = psql(host, "SELECT DISTINCT type || ':' || auth_method FROM pg_hba_file_rules").splitlines()
    assert set(rules) <= {"local:peer", "hostssl:scram-sha-256"}, rules
    assert host.file(f"{PG['config_dir']}/server.key").mode == 0o600


def test_tuning_follows_the_host(host):
    # The lab states 1 GB per container: shared_buffers is a quarter of it.
    assert psql(host, "SHOW shared_buffers") == "256MB"
    assert psql(host, "SHOW effective_cache_size") == "768MB"
    assert psql(host, "SHOW max_connections") == "200"
    assert psql(host, "SHOW wal_compression") == "lz4"
    assert psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_session_timeouts_spare_the_superuser(host):
    applied = psql(host, "SELECT name || '=' || setting FROM pg_file_settings WHERE applied AND name IN "
                         "('statement_timeout', 'idle_in_transaction_session_timeout') ORDER BY 1").splitlines()
    assert applied == ["idle_in_transaction_session_timeout=30s", "statement_timeout=30s"]
    assert psql(host, "SHOW statement_timeout") == "0"  # postgres' own setting (ALTER ROLE)


def test_slow_query_in_pg_stat_statements_and_the_log(primary):
    primary.run_expect([0], "runuser -u postgres -- psql -XAtq -c 'SELECT pg_sleep(0.6) AS slow_probe'")
    calls = psql(primary, "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE '%pg_sleep%slow_probe%'")
    assert int(calls) >= 1
    log = primary.file(LOG).content_string
    assert re.search(r"duration: \d+\.\d+ ms\s+statement: SELECT pg_sleep\(0\.6\) AS slow_probe", log)
    assert "Query Text: SELECT pg_sleep(0.6) AS slow_probe" not in log  # under auto_explain's 1 s


def test_pgaudit_logs_ddl(primary):
    assert "pgaudit" in psql(primary, "SHOW shared_preload_libraries")
    psql(primary, "CREATE TABLE IF NOT EXISTS audit_probe (i int); DROP TABLE audit_probe")
    assert "AUDIT: SESSION" in primary.file(LOG).content_string and "DROP TABLE audit_probe" in primary.file(LOG).content_string


AUDIT_LOG = "/var/log/pgfleet-audit/pgaudit.log"


def test_audit_lines_have_a_log_of_their_own_that_rotates(primary):
    """rsyslog copies pgaudit's lines (a multi-line statement as one line) and nothing else;
    after a rotation the next line lands in a new file, the old one is kept."""
    audit = primary.file(AUDIT_LOG)
    psql(primary, "CREATE TABLE audit_own_log (i int,\n j int); DROP TABLE audit_own_log")
    assert wait_for(lambda: "DROP TABLE audit_own_log" in primary.file(AUDIT_LOG).content_string, timeout=15)
    assert (audit.user, audit.group, audit.mode) == ("root", "adm", 0o640)
    directory = primary.file("/var/log/pgfleet-audit")
    assert (directory.user, directory.group, directory.mode) == ("root", "adm", 0o750)
    lines = audit.content_string.splitlines()
    assert lines and all("AUDIT: " in line for line in lines), [line for line in lines if "AUDIT: " not in line][:3]
    # PostgreSQL indents a message's continuation lines with a tab; rsyslog joins them with "\n".
    assert any(re.search(r"CREATE TABLE audit_own_log \(i int,\\n\s* j int\)", line) for line in lines)
    assert "rotate 90" in primary.file("/etc/logrotate.d/pgfleet-pgaudit").content_string
    primary.check_output("logrotate -f /etc/logrotate.d/pgfleet-pgaudit")
    # rsyslog closes the renamed file on logrotate's HUP and opens the new one at its next line.
    assert wait_for(lambda: AUDIT_LOG + ".1" not in primary.check_output("ls -l /proc/$(pidof rsyslogd)/fd"), timeout=10)
    psql(primary, "CREATE TABLE audit_after_rotation (i int); DROP TABLE audit_after_rotation")
    assert wait_for(lambda: "audit_after_rotation" in primary.file(AUDIT_LOG).content_string, timeout=15)
    rotated = primary.file(AUDIT_LOG + ".1").content_string
    assert "audit_own_log" in rotated and "audit_after_rotation" not in rotated


PRE_CHECK = "Check the PostgreSQL inventory"  # site.yml's play after the facts, before any change
PREFLIGHT = "Check what each host's roles need from the inventory"  # site.yml's play before any host is contacted


def last_play(report):
    return report["plays"][-1]["play"]["name"]


def test_bad_parameter_name_fails_before_any_host_changes(primary):
    conf = f"{PG['config_dir']}/conf.d/00-pgfleet.conf"
    before = primary.file(conf).content_string
    for extra, word in (({"shared_bufers": "1GB"}, "shared_bufers"), ({"shared_buffers": "100TB"}, "100TB")):
        report = converge("-e", json.dumps({"pg_parameters": extra}), expect_success=False)
        assert report["rc"] != 0
        assert last_play(report) == PRE_CHECK, "a play after the pre-check ran"
        messages = json.dumps(report["plays"][-1])
        assert word in messages, messages[-2000:]
    assert primary.file(conf).content_string == before


def as_service(host, user, db, sql):
    """SQL as a service user over TLS to the primary's private address (scram)."""
    conninfo = f"host={host.backend.get_hostname()} dbname={db} user={user} sslmode=verify-full sslrootcert={ROOT_CERT}"
    return host.run("PGPASSWORD=%s psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s",
                    secret(f"pg_{user}_password"), conninfo, sql)


def test_service_user_reads_and_writes_but_cannot_delete_or_drop(primary):
    psql(primary, "SET ROLE payments_db_owner; CREATE TABLE IF NOT EXISTS payments (id int PRIMARY KEY, amount int)",
         db="payments_db")
    assert as_service(primary, "payments_service", "payments_db",
                      "INSERT INTO payments VALUES (1, 10) ON CONFLICT (id) DO UPDATE SET amount = 10").rc == 0
    assert as_service(primary, "payments_service", "payments_db", "UPDATE payments SET amount = 11").rc == 0
    assert as_service(primary, "payments_service", "payments_db", "SELECT amount FROM payments").stdout.strip() == "11"
    for sql in ("DELETE FROM payments", "DROP TABLE payments", "TRUNCATE payments", "CREATE TABLE mine (i int)"):
        result = as_service(primary, "payments_service", "payments_db", sql)
        assert result.rc != 0 and ("permission denied" in result.stderr or "must be owner" in result.stderr), (sql, result.stderr)
    # A service reaches only its own database.
    result = as_service(primary, "payments_service", "auth_db", "SELECT 1")
    assert result.rc != 0 and "permission denied for database" in result.stderr


def test_service_users_have_timeouts_limits_and_audited_writes(primary):
    rows = psql(primary, "SELECT rolname || ' ' || rolconnlimit || ' ' || array_to_string(rolconfig, ',') FROM pg_roles "
                         "WHERE rolname = 'payments_service'")
    assert rows.startswith("payments_service 50 ") and "statement_timeout=30s" in rows and "pgaudit.log=ddl,role,write" in rows
    as_service(primary, "payments_service", "payments_db", "UPDATE payments SET amount = 12 WHERE id = 1")
    assert "WRITE,UPDATE" in primary.file(LOG).content_string


SERVICE_USERS = ("auth_service", "payments_service", "admin_service", "profile_service")


def test_no_password_in_statistics_and_only_scram_secrets_stored(primary):
    secrets = {name: secret(f"pg_{name}_password") for name in SERVICE_USERS}
    secrets.update(replicator=secret("pg_replication_password"), pgbouncer_auth=secret("pgbouncer_auth_password"))
    # Every role's password was set at converge: pg_stat_statements tracks utility statements.
    assert psql(primary, "SHOW pg_stat_statements.track_utility") == "on"
    # No statement with a password literal (pgfleet's own read of pg_authid.rolpassword is fine).
    assert psql(primary, "SELECT count(*) FROM pg_stat_statements WHERE query ~* 'password\\s*'''") == "0"
    texts = primary.check_output(f"cat {PG['data_dir']}/pg_stat_tmp/pgss_query_texts.stat | tr -d '\\0'")
    log = primary.file(LOG).content_string
    for name, value in secrets.items():
        assert value not in texts and value not in log, f"the password of {name} is readable"
    stored = psql(primary, "SELECT rolname || ' ' || left(rolpassword, 19) FROM pg_authid "
                           "WHERE rolname IN (%s) ORDER BY 1" % ", ".join(f"'{n}'" for n in secrets)).splitlines()
    assert stored == sorted(f"{name} SCRAM-SHA-256$4096:" for name in secrets), stored


def test_service_users_reach_no_default_database(primary):
    for db in ("postgres", "template1"):
        result = as_service(primary, "profile_service", db, "CREATE TEMP TABLE t (i int)")
        assert result.rc != 0 and "permission denied for database" in result.stderr, (db, result.stderr)
    # Monitoring keeps its way in (pg_monitor), by peer over the socket as the exporter does.
    assert primary.run("runuser -u prometheus -- psql -XAtq -d postgres -c 'SELECT 1'").stdout.strip() == "1"


def test_replication_only_from_the_members(primary, replicas):
    (bouncer,) = hosts_of("pgbouncer")
    conninfo = (f"host={primary.backend.get_hostname()} dbname=postgres user=replicator replication=true "
                f"sslmode=require")
    outsider = bouncer.run("PGPASSWORD=%s psql -XAtq -d %s -c IDENTIFY_SYSTEM", secret("pg_replication_password"), conninfo)
    assert outsider.rc != 0 and "no pg_hba.conf entry for replication connection" in outsider.stderr, outsider.stderr
    assert primary.run("systemctl start pgfleet-auth-failures.service").rc == 0
    prom = primary.file("/var/lib/prometheus/node-exporter/pgfleet_auth_failures.prom").content_string
    (count,) = [line.split()[-1] for line in prom.splitlines() if line.startswith('pgfleet_auth_failures_total{service="postgresql"}')]
    assert int(count) >= 1, prom
    member = replicas[0].run("PGPASSWORD=%s psql -XAtq -d %s -c IDENTIFY_SYSTEM", secret("pg_replication_password"), conninfo)
    assert member.rc == 0 and member.stdout.count("|") == 3, member.stderr
    assert " %h " in psql(primary, "SHOW log_line_prefix"), "log lines carry no client address"


def test_user_without_password_stops_the_run_before_any_host_is_contacted():
    users = [{"name": "ghost_service", "databases": ["auth_db"]}]
    report = converge("-e", json.dumps({"pg_users": users}), expect_success=False)
    assert report["rc"] != 0 and last_play(report) == PREFLIGHT, "a play after the controller's check ran"
    assert "missing required arguments: password found in pg_users" in json.dumps(report["plays"][-1])


def test_user_of_an_unlisted_database_fails_the_pre_check():
    users = [{"name": "lost_service", "password": "x", "databases": ["nowhere_db"]}]
    report = converge("-e", json.dumps({"pg_users": users}), expect_success=False)
    assert report["rc"] != 0 and last_play(report) == PRE_CHECK, "a play after the pre-check ran"
    assert "nowhere_db" in json.dumps(report["plays"][-1])
