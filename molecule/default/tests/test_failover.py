"""failover.yml on the plain streaming fleet (runs last: it moves the primary): a bad
candidate is refused with nothing changed; a good one is promoted after the old primary is
fenced, PgBouncer and the other replica follow it at once, and site.yml refuses the stale
inventory until the operator swaps the hosts."""

import json
import subprocess

from conftest import PG, inventory_with, psql, run_playbook, wait_for
from test_declared_objects import TABLES
from test_pgbouncer import via_bouncer

from fleet import hosts_of

BOUNCER_INI = "/etc/pgbouncer/pgbouncer.ini"


def bouncer_primary():
    (bouncer,) = hosts_of("pgbouncer")
    line = bouncer.check_output("grep -m1 '^profile_db = ' %s", BOUNCER_INI)
    return bouncer, line.split("host=")[1].split()[0]


def stdout_messages(report):
    return " ".join(str(r.get("msg", "")) for play in report["plays"] for task in play["tasks"]
                    for r in task["hosts"].values())


def test_failover_refuses_a_candidate_that_is_not_a_replica(primary):
    report = run_playbook("failover.yml", "-e", "failover_candidate=mol-bouncer1", expect_success=False)
    assert report["rc"] != 0
    assert "failover_candidate 'mol-bouncer1' is not a host of postgres_replicas" in stdout_messages(report)
    assert primary.service(PG["service"]).is_running
    assert primary.run(f"systemctl is-enabled {PG['service']}").stdout.strip() != "masked"
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"


def test_failover_refuses_when_the_old_primary_cannot_be_reached(primary, replicas, tmp_path):
    """Unreachable is not fenced: without -e failover_old_primary_fenced=true nothing is promoted."""
    cut_off = tmp_path / "cut_off.yml"  # a second inventory source: the old primary answers on no port
    cut_off.write_text("all:\n  hosts:\n    mol-pg1:\n      ansible_connection: ssh\n"
                       "      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    report = run_playbook("failover.yml", "-i", str(cut_off), "-e", "failover_candidate=mol-pg2",
                          expect_success=False)
    assert report["rc"] != 0
    assert "could not be verified as stopped and masked" in stdout_messages(report)
    by_name = {h.backend.name: h for h in replicas}
    assert psql(by_name["mol-pg2"], "SELECT pg_is_in_recovery()") == "t", "promoted without a verified fence"
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"
    assert bouncer_primary()[1] == "mol-pg1"


def test_failover_fences_the_old_primary_promotes_the_candidate_and_repoints_the_rest(primary, replicas):
    by_name = {h.backend.name: h for h in replicas}
    candidate, other = by_name["mol-pg2"], by_name["mol-pg3"]
    psql(primary, "CREATE TABLE failover_marker AS SELECT 42 AS answer")
    lsn = psql(primary, "SELECT pg_current_wal_flush_lsn()")
    for replica in replicas:
        assert wait_for(lambda r=replica: psql(r, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t", timeout=30)

    report = run_playbook("failover.yml", "-e", "failover_candidate=mol-pg2")
    assert "mol-pg2 is the primary" in stdout_messages(report)

    assert not primary.service(PG["service"]).is_running
    assert primary.run(f"systemctl is-enabled {PG['service']}").stdout.strip() == "masked"
    assert primary.run(f"systemctl start {PG['service']}").rc != 0, "the fenced primary could be started"
    assert psql(candidate, "SELECT pg_is_in_recovery()") == "f"
    assert psql(candidate, "SELECT answer FROM failover_marker") == "42"
    assert wait_for(lambda: psql(other, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver")
                    == "streaming mol-pg2", timeout=60)
    psql(candidate, "INSERT INTO failover_marker VALUES (43)")
    assert wait_for(lambda: psql(other, "SELECT count(*) FROM failover_marker") == "2", timeout=30)

    # Writes through PgBouncer reach the new primary with no other run.
    bouncer, points_at = bouncer_primary()
    assert points_at == "mol-pg2"
    # The service user may not create tables (nor TEMP ones): the owner role makes one, as a
    # migration would, and its default privileges let the service user write to it.
    psql(candidate, "SET ROLE profile_db_owner; CREATE TABLE after_failover (i int)", db="profile_db")
    write = via_bouncer(bouncer, "INSERT INTO after_failover VALUES (1); "
                                 "SELECT count(*) || ' ' || pg_is_in_recovery() FROM after_failover")
    assert write.rc == 0 and write.stdout.strip() == "1 false", write.stderr


def test_site_yml_refuses_the_inventory_from_before_the_failover(primary):
    """The inventory still names mol-pg1: a converge would send PgBouncer back to the fenced
    host. It stops in its first play, naming both hosts, and changes nothing."""
    report = run_playbook("site.yml", expect_success=False)
    assert report["rc"] != 0
    said = stdout_messages(report)
    assert "mol-pg1 is fenced" in said and "mol-pg2 runs as a primary" in said, said
    assert "pg_replica_rebuild=true" in said
    assert bouncer_primary()[1] == "mol-pg2"
    assert primary.run(f"systemctl is-enabled {PG['service']}").stdout.strip() == "masked"


def test_rejoin_makes_the_old_primary_a_standby_before_it_accepts_a_write(primary, replicas, tmp_path):
    """The procedure failover.yml prints: with the inventory swapped, site.yml rejoins the
    fenced old primary as a standby of the new one. A writer on the old primary itself (its
    local socket: nothing in the way) must get no acknowledged write at any moment."""
    old, new = primary, {h.backend.name: h for h in replicas}["mol-pg2"]
    swapped = inventory_with({"mol-pg1": ("postgres_primary", "postgres_replicas"),
                              "mol-pg2": ("postgres_replicas", "postgres_primary")}, str(tmp_path / "swapped"))
    # The fleet runs with what test_declared_objects declared (max_locks_per_transaction 128 among
    # them): converge with the same, as an operator's inventory would. A standby configured
    # below its primary's running value cannot start at all.
    declared = tmp_path / "declared.json"
    declared.write_text(json.dumps(TABLES))
    writer = subprocess.Popen(  # pylint: disable=consider-using-with
        ["podman", "exec", "mol-pg1", "bash", "-c",
         "rm -f /tmp/acks; while true; do runuser -u postgres -- psql -XAtq -c "
         "'INSERT INTO failover_marker VALUES (99) RETURNING 1' >> /tmp/acks 2>/dev/null; sleep 0.1; done"])
    try:
        report = run_playbook("site.yml", "--limit", "mol-pg1,mol-pg2", "-e", "pg_replica_rebuild=true",
                              "-e", "@" + str(declared), inventory=swapped)
    finally:
        writer.terminate()
        writer.wait()
        subprocess.run(["podman", "exec", "mol-pg1", "pkill", "-f", "while true"], check=False)
    assert report["rc"] == 0
    acks = old.run("cat /tmp/acks").stdout.split()
    assert acks == [], f"the old primary acknowledged {len(acks)} writes during the rejoin"
    assert psql(old, "SELECT pg_is_in_recovery()") == "t"
    assert old.run(f"systemctl is-enabled {PG['service']}").stdout.strip() != "masked"  # the fence is lifted
    assert wait_for(lambda: psql(old, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver")
                    == "streaming mol-pg2", timeout=60)
    psql(new, "INSERT INTO failover_marker VALUES (44)")
    assert wait_for(lambda: psql(old, "SELECT count(*) FROM failover_marker WHERE answer IN (43, 44)") == "2",
                    timeout=30)
    assert psql(new, "SELECT count(*) FROM failover_marker WHERE answer = 99") == "0"
