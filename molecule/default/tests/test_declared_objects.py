"""Objects declared in the inventory, on tables an application's migration created:
a partitioned table (partitioned on the primary, a daily timer everywhere that maintains
the primary and skips standbys), row-level security that isolates tenants, and indexes
built concurrently; and a setting only a restart applies, restarted replicas first. One
pair of site.yml runs (their tags only) serves all four (CI time).

Runs after test_check_mode.py (pytest takes files in name order), then changes the
fleet the way a user would: by adding declarations to the inventory. No later test
converges the PostgreSQL hosts without them (that would revert the restart-only setting).
"""

import json
import os
import tempfile

from conftest import PG, changed_tasks, converge, psql, secret

ROOT_CERT = f"{PG['config_dir']}/root.crt"

TENANT = "tenant_id = current_setting('app.tenant_id', true)::int"
TABLES = {
    "pg_partitioned_tables": [{"db": "postgres", "table": "molecule_messages", "interval": "month",
                               "premake": 3, "default_partition": True, "retention": "12 months"}],
    "pg_rls_policies": [{"db": "profile_db", "table": "notes", "rls": "enabled",
                         "policies": [{"name": "tenant_isolation", "roles": ["profile_service"],
                                       "using": TENANT, "with_check": TENANT}]}],
    # max_locks_per_transaction needs a restart: site.yml restarts replicas, then the primary.
    "pg_parameters": {"max_locks_per_transaction": 128},
    "pg_indexes": [
        {"db": "profile_db", "table": "notes", "name": "notes_tenant_open", "columns": "tenant_id", "where": "body IS NOT NULL"},
        {"db": "profile_db", "table": "notes", "name": "notes_body_lower", "columns": "lower(body)"},
        {"db": "profile_db", "table": "notes", "name": "notes_tags", "columns": "tags", "type": "gin"},
        {"db": "profile_db", "table": "notes", "name": "notes_created", "columns": "created_at", "type": "brin"},
    ],
}


# The declarations are PostgreSQL's and the partition maintenance's: the runs take those
# plays alone, as an operator would after such a change (the scenario's idempotence step
# and test_check_mode.py cover every play on the converged fleet).
ONLY_POSTGRES = ("--limit", "postgres", "--tags", "postgresql,partitions")


def started_at(host):
    return float(psql(host, "SELECT extract(epoch FROM pg_postmaster_start_time())"))


def test_declared_table_is_partitioned_and_maintained_daily(primary, replicas):
    psql(primary, "CREATE TABLE IF NOT EXISTS molecule_messages (id bigserial, created_at timestamptz NOT NULL) "
                  "PARTITION BY RANGE (created_at)")
    psql(primary, "SET ROLE profile_db_owner; CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, "
                  "tenant_id int NOT NULL, body text, tags text[], created_at timestamptz DEFAULT now())", db="profile_db")
    fleet = [primary, *replicas]
    started = [started_at(h) for h in fleet]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(TABLES, f)
    try:
        first = converge(*ONLY_POSTGRES, "-e", "@" + f.name)
        assert changed_tasks(first), "declaring a table changed nothing"
        restarted = [started_at(h) for h in fleet]
        again = converge(*ONLY_POSTGRES, "-e", "@" + f.name)
        assert changed_tasks(again) == []
    finally:
        os.unlink(f.name)
    for host, before, after in zip(fleet, started, restarted):
        assert after != before and psql(host, "SHOW max_locks_per_transaction") == "128"
        assert psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"
        assert started_at(host) == after  # the second run restarted nothing
    assert max(restarted[1:]) < restarted[0], restarted  # the replicas before the primary

    # DEFAULT + the current month + 3 ahead
    assert psql(primary, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'molecule_messages'::regclass") == "5"
    for host in [primary, *replicas]:
        assert host.service("pgfleet-partition-maintenance.timer").is_enabled
        assert host.service("pgfleet-partition-maintenance.timer").is_running
        host.check_output("systemctl start pgfleet-partition-maintenance.service")
        last = host.check_output("journalctl -u pgfleet-partition-maintenance.service -o cat --no-pager -n 20")
        if host is primary:
            assert '"table": "postgres:public.molecule_messages"' in last
        else:
            assert "standby" in last
    config = primary.file("/etc/pgfleet/partitions.json")
    assert config.mode == 0o640 and config.group == "postgres"


def as_profile_service(host, tenant, sql):
    conninfo = (f"host={host.backend.get_hostname()} dbname=profile_db user=profile_service sslmode=verify-full "
                f"sslrootcert={ROOT_CERT} options='-c app.tenant_id={tenant}'")
    return host.run("PGPASSWORD=%s psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s",
                    secret("pg_profile_service_password"), conninfo, sql)


def test_row_level_security_isolates_tenants(primary):
    for tenant in (1, 2):
        assert as_profile_service(primary, tenant, f"INSERT INTO notes (tenant_id, body) VALUES ({tenant}, 'n{tenant}')").rc == 0
    assert as_profile_service(primary, 1, "SELECT DISTINCT tenant_id FROM notes").stdout.split() == ["1"]
    assert as_profile_service(primary, 2, "SELECT DISTINCT tenant_id FROM notes").stdout.split() == ["2"]
    smuggled = as_profile_service(primary, 1, "INSERT INTO notes (tenant_id, body) VALUES (2, 'not mine')")
    assert smuggled.rc != 0 and "row-level security" in smuggled.stderr


def test_declared_indexes_exist_and_are_valid(primary):
    rows = psql(primary, "SELECT c.relname || ' ' || am.amname || ' ' || i.indisvalid FROM pg_index i "
                         "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                         "WHERE i.indrelid = 'notes'::regclass AND NOT i.indisprimary ORDER BY 1", db="profile_db")
    assert rows.splitlines() == ["notes_body_lower btree true", "notes_created brin true", "notes_tags gin true",
                                 "notes_tenant_open btree true"]
    assert "WHERE (body IS NOT NULL)" in psql(primary, "SELECT pg_get_indexdef('notes_tenant_open'::regclass)", db="profile_db")
