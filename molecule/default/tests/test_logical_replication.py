"""The lab's declared publication (issue 21, item 2): every member runs wal_level=logical (a
replica promoted later can still decode), the primary keeps payments_pub (replicated to the
standbys' catalogs), and another member logs in as the logical replication user over verified
TLS and decodes from a slot; a service user may not. The subscribing side runs between two
real clusters in tests/integration/test_logical_replication.py."""

from conftest import PG, psql, secret

ROOT_CERT = f"{PG['config_dir']}/root.crt"


def replication_session(client, server, user, password, command):
    conninfo = (f"host={server.backend.get_hostname()} dbname=payments_db user={user} replication=database "
                f"sslmode=verify-full sslrootcert={ROOT_CERT}")
    return client.run("PGPASSWORD=%s psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", password, conninfo, command)


def test_every_member_runs_wal_level_logical(primary, replicas):
    assert [psql(host, "SHOW wal_level") for host in (primary, *replicas)] == ["logical"] * (1 + len(replicas))


def test_the_declared_publication_is_kept_and_replicated(primary, replicas):
    for host in (primary, *replicas):
        assert psql(host, "SELECT puballtables FROM pg_publication WHERE pubname = 'payments_pub'", db="payments_db") == "t"
    assert psql(primary, "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = 'logical_replicator'") == "t|f"


def test_a_member_decodes_as_the_logical_user_and_a_service_user_cannot(primary, replicas):
    # A temporary slot: dropped when the session ends, so nothing is left holding WAL.
    slot = replication_session(replicas[0], primary, "logical_replicator", secret("pg_logical_replication_password"),
                               "CREATE_REPLICATION_SLOT lab_probe TEMPORARY LOGICAL pgoutput")
    assert slot.rc == 0 and slot.stdout.startswith("lab_probe|"), slot.stderr
    assert psql(primary, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lab_probe'") == "0"
    refused = replication_session(replicas[0], primary, "payments_service", secret("pg_payments_service_password"),
                                  "IDENTIFY_SYSTEM")
    assert refused.rc != 0 and "replication" in refused.stderr, refused.stderr
