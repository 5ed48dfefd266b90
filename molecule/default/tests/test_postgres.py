"""What a user of the converged lab fleet expects of PostgreSQL and its replication."""

import uuid

from conftest import PG, podman_hosts, psql, wait_for

# The per-host checks below run on the PostgreSQL hosts only (the fleet has Redis too).
testinfra_hosts = podman_hosts("postgres")

SERVICE = PG["service"]


def test_postgresql_runs_under_systemd(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_data_checksums_are_on(host):
    assert psql(host, "SHOW data_checksums") == "on"


def test_listens_only_on_localhost_and_private_address(host):
    (private,) = [a for a in host.interface("eth0").addresses if ":" not in a]
    addrs = psql(host, "SHOW listen_addresses")
    assert addrs == f"localhost,{private}"
    assert host.socket(f"tcp://{private}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_data_directory_is_private_to_postgres(host):
    d = host.file(PG["data_dir"])
    assert d.user == "postgres"
    assert d.mode == 0o700


def test_primary_is_not_in_recovery(primary):
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"


def test_primary_streams_to_every_replica(primary, replicas):
    rows = psql(primary, "SELECT application_name || ':' || state FROM pg_stat_replication").splitlines()
    expected = {r.backend.get_hostname().replace("-", "_") + ":streaming" for r in replicas}
    assert expected <= set(rows), rows


def test_replicas_are_streaming_standbys_of_the_primary(primary, replicas):
    primary_name = primary.backend.get_hostname()
    for replica in replicas:
        assert psql(replica, "SELECT pg_is_in_recovery()") == "t"
        status = psql(replica, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver")
        assert status == f"streaming {primary_name}"


def test_write_on_primary_is_readable_on_replicas(primary, replicas):
    marker = str(uuid.uuid4())
    psql(primary, "CREATE TABLE IF NOT EXISTS molecule_probe (marker text PRIMARY KEY)")
    psql(primary, f"INSERT INTO molecule_probe VALUES ('{marker}')")
    for replica in replicas:
        seen = wait_for(lambda: psql(replica, f"SELECT count(*) FROM molecule_probe WHERE marker = '{marker}'") == "1")
        assert seen, f"{marker} did not reach {replica.backend.get_hostname()} within 30 s"


def test_replicas_refuse_writes(replicas):
    for replica in replicas:
        result = replica.run("runuser -u postgres -- psql -XAtq -c %s", "CREATE TABLE must_fail (i int)")
        assert result.rc != 0
        assert "read-only transaction" in result.stderr
