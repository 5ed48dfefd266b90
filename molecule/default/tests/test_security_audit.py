"""security_audit.yml on the converged lab fleet: zero critical findings, a table per
host (PostgreSQL, PgBouncer and Redis hosts, each with the OS checks), and a real failure
when a host breaks a rule (then put back)."""

import json
import re

from conftest import hosts_of, psql, run_playbook

AUDITED = {"mol-pg1", "mol-pg2", "mol-pg3", "mol-bouncer1", "mol-redis1"}


def task_hosts(report, name):
    """{host: result} of the task NAME, whichever play runs it."""
    return {host: result for play in report["plays"] for task in play["tasks"] if task["task"]["name"] == name
            for host, result in task["hosts"].items()}


def test_lab_fleet_has_no_critical_finding():
    report = run_playbook("security_audit.yml")
    assert report["rc"] == 0, json.dumps(report["stats"])
    findings, printed = task_hosts(report, "Collect the findings"), task_hosts(report, "Print the results")
    assert set(findings) == {"mol-pg1", "mol-pg2", "mol-pg3"}
    for host, result in findings.items():
        rows = result["ansible_facts"]["pg_audit_findings"]
        assert len(rows) >= 17 and all(row[0] for row in rows)
        assert [r for r in rows if r[1] == "critical" and r[3]] == [], (host, rows)
        assert [r for r in rows if r[0] in ("replication_hba", "log_prefix") and r[3]] == [], (host, rows)
    # Each host's table: the checks that apply to it, every critical one passed.
    expected = {"mol-pg1": ["hba_tls", "password_statements", "public_connect"],
                "mol-bouncer1": ["pgbouncer_client_tls", "pgbouncer_server_tls", "pgbouncer_auth", "pgbouncer_console"],
                "mol-redis1": ["redis_default_user", "redis_protected_mode", "redis_bind"]}
    assert set(printed) == AUDITED
    for host, result in printed.items():
        for check in ["secret_files", "secret_arguments"] + expected.get(host, []):
            assert any(line.startswith(f"ok    critical  {check} ") for line in result["msg"]), (host, check, result["msg"])
        assert not [line for line in result["msg"] if line.startswith("FAIL  critical")], (host, result["msg"])
        assert any(line.startswith("ok    warning   firewall ") for line in result["msg"]), (host, result["msg"])
    assert all(s["changed"] == 0 for s in report["stats"].values())


def test_a_broken_rule_fails_the_audit(primary):
    psql(primary, "CREATE ROLE audit_intruder SUPERUSER")
    try:
        report = run_playbook("security_audit.yml", "--limit", "postgres_primary", expect_success=False)
    finally:
        psql(primary, "DROP ROLE audit_intruder")
    assert report["rc"] != 0
    assert "superusers critical no superuser but postgres audit_intruder" in json.dumps(report)


def test_a_secret_file_others_can_read_fails_the_audit():
    bouncer = hosts_of("pgbouncer")[0]
    userlist = "/etc/pgbouncer/userlist.txt"
    mode = bouncer.file(userlist).mode
    bouncer.check_output(f"chmod o+r {userlist}")
    try:
        report = run_playbook("security_audit.yml", "--limit", "pgbouncer", expect_success=False)
    finally:
        bouncer.check_output(f"chmod {mode:o} {userlist}")
    assert report["rc"] != 0
    assert re.search(f"secret_files critical no file holding a secret is readable by others {userlist} -[rwx-]{{6}}r",
                     json.dumps(report)), json.dumps(report)[-2000:]
