"""security_audit.yml on the converged lab fleet: zero critical findings, a table per
host, and a real failure when a host breaks a rule (then put back)."""

import json

from conftest import psql, run_playbook


def audit_rows(report):
    tasks = {t["task"]["name"]: t["hosts"] for t in report["plays"][0]["tasks"]}
    return tasks["Collect the findings"], tasks["Print the results"]


def test_lab_fleet_has_no_critical_finding():
    report = run_playbook("security_audit.yml")
    assert report["rc"] == 0, json.dumps(report["stats"])
    findings, printed = audit_rows(report)
    assert set(findings) == {"mol-pg1", "mol-pg2", "mol-pg3"}
    for host, result in findings.items():
        rows = result["ansible_facts"]["pg_audit_findings"]
        assert len(rows) >= 17 and all(row[0] for row in rows)
        assert [r for r in rows if r[1] == "critical" and r[3]] == [], (host, rows)
        assert [r for r in rows if r[0] in ("replication_hba", "log_prefix") and r[3]] == [], (host, rows)
        for check in ("hba_tls", "password_statements", "public_connect"):
            assert any(f"ok    critical  {check}" in line for line in printed[host]["msg"]), (check, printed[host])
    assert all(s["changed"] == 0 for s in report["stats"].values())


def test_a_broken_rule_fails_the_audit(primary):
    psql(primary, "CREATE ROLE audit_intruder SUPERUSER")
    try:
        report = run_playbook("security_audit.yml", "--limit", "postgres_primary", expect_success=False)
    finally:
        psql(primary, "DROP ROLE audit_intruder")
    assert report["rc"] != 0
    assert "superusers critical no superuser but postgres audit_intruder" in json.dumps(report)
