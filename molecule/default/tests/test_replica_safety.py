"""pg_replica on the converged fleet: the replica's secrets, and the primary protected."""

from conftest import PG, adhoc, hosts_of


def test_replication_password_only_in_the_passfile(replicas):
    for replica in replicas:
        passfile = replica.file("/var/lib/postgresql/.pgpass")
        assert passfile.user == "postgres" and passfile.mode == 0o600
        auto = replica.file(f"{PG['data_dir']}/postgresql.auto.conf").content_string
        assert "passfile=/var/lib/postgresql/.pgpass" in auto and "password" not in auto


def test_no_host_keeps_the_new_cluster_marker():
    for host in hosts_of("postgres"):
        assert not host.file(f"{PG['data_dir']}/pgfleet.new-cluster").exists


def test_the_running_primary_is_never_made_a_replica(primary):
    """The mistake of pointing pg_replica at the primary's own host is refused, and harmless."""
    name = primary.backend.get_hostname()
    args = {"data_dir": PG["data_dir"], "service": PG["service"],
            "primary_host": name, "replication_password": "{{ pg_replication_password }}", "slot": "not_created"}
    result = adhoc(name, "pgfleet.core.pg_replica", args)[name]
    assert result.get("failed") and "belongs to a running primary" in result["msg"], result
    assert "rebuild=true" in result["msg"] and result["commands"] == []
    assert primary.service(PG["service"]).is_running
    assert primary.check_output("runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()'") == "f"
    slots = primary.check_output("runuser -u postgres -- psql -XAtq -c 'SELECT slot_name FROM pg_replication_slots'")
    assert "not_created" not in slots.split()
