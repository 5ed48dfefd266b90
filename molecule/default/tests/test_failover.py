"""failover.yml on the plain streaming fleet (runs last: it moves the primary): a bad
candidate is refused with nothing changed; a good one is promoted after the old primary is
fenced, and the other replica follows it."""

from conftest import psql, run_playbook, wait_for


def stdout_messages(report):
    return " ".join(str(r.get("msg", "")) for play in report["plays"] for task in play["tasks"]
                    for r in task["hosts"].values())


def test_failover_refuses_a_candidate_that_is_not_a_replica(primary):
    report = run_playbook("failover.yml", "-e", "failover_candidate=mol-bouncer1", expect_success=False)
    assert report["rc"] != 0
    assert "failover_candidate 'mol-bouncer1' is not a host of postgres_replicas" in stdout_messages(report)
    assert primary.service("postgresql@15-main").is_running
    assert primary.run("systemctl is-enabled postgresql@15-main").stdout.strip() != "masked"
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"


def test_failover_fences_the_old_primary_promotes_the_candidate_and_repoints_the_rest(primary, replicas):
    by_name = {h.backend.name: h for h in replicas}
    candidate, other = by_name["mol-pg2"], by_name["mol-pg3"]
    psql(primary, "CREATE TABLE failover_marker AS SELECT 42 AS answer")
    lsn = psql(primary, "SELECT pg_current_wal_flush_lsn()")
    for replica in replicas:
        assert wait_for(lambda r=replica: psql(r, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t", timeout=30)

    report = run_playbook("failover.yml", "-e", "failover_candidate=mol-pg2")
    assert "mol-pg2 is the primary" in stdout_messages(report)

    assert not primary.service("postgresql@15-main").is_running
    assert primary.run("systemctl is-enabled postgresql@15-main").stdout.strip() == "masked"
    assert primary.run("systemctl start postgresql@15-main").rc != 0, "the fenced primary could be started"
    assert psql(candidate, "SELECT pg_is_in_recovery()") == "f"
    assert psql(candidate, "SELECT answer FROM failover_marker") == "42"
    assert wait_for(lambda: psql(other, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver")
                    == "streaming mol-pg2", timeout=60)
    psql(candidate, "INSERT INTO failover_marker VALUES (43)")
    assert wait_for(lambda: psql(other, "SELECT count(*) FROM failover_marker") == "2", timeout=30)
