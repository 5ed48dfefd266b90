"""Debian 13 with PostgreSQL 17 (this scenario's platform; `default` and `ha` run Debian 12
with 15): the release's own PostgreSQL, every metric the alert rules read exported by this
release's exporters, the security audit clean, the performance report, and the partition and
row-level-security modules against PostgreSQL 17."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import boto3

from conftest import sql
from fleet import PLAYBOOKS, adhoc, https_get, run_job, run_playbook, secret, wait_for

RULES = os.path.join(PLAYBOOKS, "..", "roles", "monitoring", "templates", "pgfleet-alerts.yml.j2")
CA = "/etc/prometheus/tls/root.crt"


def metric_names(host, port):
    name = host.backend.get_hostname()
    status, body = https_get(host, f"https://{name}:{port}/metrics", CA,
                             "prometheus:" + secret("exporters_basic_auth_password"))
    assert status == 200, body[:300]
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in body.splitlines() if line and not line.startswith("#")}


def test_hosts_run_debian_13_and_its_postgresql(primary, replica, repo, cluster):
    for host in (primary, replica, repo):
        assert host.file("/etc/debian_version").content_string.startswith("13.")
    assert cluster["version"] == "17"
    for host in (primary, replica):
        assert sql(host, "SHOW server_version_num").startswith("17")


def test_every_metric_the_alert_rules_read_is_exported(primary, replica, repo):
    with open(RULES, encoding="utf-8") as f:
        read = set(re.findall(r"\b((?:pg|pgfleet|pgbackrest|node)_[a-z0-9_]+)", f.read()))
    # pg_stat_statements is named in a rule's annotation, not a metric (PgBouncer's and
    # Redis' metrics, of hosts this scenario does not have, do not match the pattern).
    read -= {"pg_stat_statements"}
    exported = set()
    for host in (primary, replica, repo):
        exported |= metric_names(host, 9100)
    for host in (primary, replica):
        exported |= metric_names(host, 9187)
    # The auth-failure counter is written by its timer once a minute; the drill's metrics by the drill;
    # a subscription's only by a subscriber (this scenario has none: tests/integration/
    # test_logical_replication.py scrapes them from a real one).
    read -= {"pgfleet_auth_failures_total", "pgfleet_restore_drill_success", "pgfleet_restore_drill_rto_seconds",
             "pgfleet_restore_drill_last_success_timestamp_seconds",
             "pgfleet_subscription_enabled", "pgfleet_subscription_worker_running"}
    assert read, "no metric found in the alert rules"
    assert sorted(read - exported) == [], "alert rules read metrics this release's exporters do not export"


def test_security_audit_finds_nothing_critical():
    report = run_playbook("security_audit.yml")
    findings = {host: result["ansible_facts"]["pg_audit_findings"] for play in report["plays"]
                for task in play["tasks"] if task["task"]["name"] == "Collect the findings"
                for host, result in task["hosts"].items()}
    assert set(findings) == {"mol-bk-pg1", "mol-bk-pg2"}
    for host, rows in findings.items():
        assert len(rows) >= 17
        assert [r for r in rows if r[1] == "critical" and r[3]] == [], (host, rows)
    assert all(s["changed"] == 0 for s in report["stats"].values()), json.dumps(report["stats"])


def test_performance_report_renders_goes_to_s3_and_comes_back_as_job_artifacts(primary, tmp_path):
    """The report on the controller, in S3 (moto's server on loopback stands in) and, run as
    AWX's job template, in the job's artifacts (what AWX keeps after its job container)."""
    sql(primary, "SELECT pg_sleep(0.1)", db="payments_db")
    port = free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        aws = {"AWS_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "eu-west-1"}
        s3 = boto3.client("s3", endpoint_url=aws["AWS_URL"], region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        assert wait_for(lambda: reachable(port), timeout=30), "moto_server did not start"
        s3.create_bucket(Bucket="pgfleet-reports", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        run_playbook("performance_report.yml", "-e", f"report_dest={tmp_path}", "-e", "performance_report_s3_bucket=pgfleet-reports",
                     env=aws)
        stamp = time.strftime("%Y-%m-%d", time.gmtime())
        name = f"payments_db-{stamp}.md"
        text = (tmp_path / "mol-bk-pg1" / name).read_text(encoding="utf-8")
        stored = s3.get_object(Bucket="pgfleet-reports", Key=f"pgfleet/performance-reports/mol-bk-pg1/{name}")["Body"].read()
        assert stored.decode() == text
    finally:
        moto.terminate()
        moto.wait(10)
    assert text.startswith("# Performance report: payments_db on mol-bk-pg1")
    for title in ("Top statements by total time", "Index usage", "Table bloat (estimate)"):
        assert f"\n## {title}\n" in text, title
    assert "pg_sleep" in text

    job = run_job("pgfleet performance report", {"report_dest": str(tmp_path / "job")})
    (stats,) = [e for e in job["events"] if e["event"] == "playbook_on_stats"]
    artifacts = stats["event_data"]["artifact_data"]["performance_reports"]
    # (mol-bk-pg2 reports too by now: test_backup.py's last test promoted it outside the fleet)
    assert artifacts["mol-bk-pg1"][name].startswith("# Performance report: payments_db on mol-bk-pg1")
    assert all(text.startswith("# Performance report: ") for reports in artifacts.values() for text in reports.values())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_partition_and_rls_modules_on_postgresql_17(primary):
    sql(primary, "DROP TABLE IF EXISTS p17_events CASCADE")
    sql(primary, "CREATE TABLE p17_events (id bigserial, tenant int, created_at timestamptz NOT NULL) "
                 "PARTITION BY RANGE (created_at)")
    part = {"login_db": "postgres", "table": "p17_events", "interval": "month", "premake": 2, "default_partition": True,
            "login_unix_socket": "/var/run/postgresql"}
    first = adhoc("mol-bk-pg1", "pgfleet.core.pg_partition", part, "postgres")["mol-bk-pg1"]
    assert first.get("changed") and not first.get("failed"), first
    again = adhoc("mol-bk-pg1", "pgfleet.core.pg_partition", part, "postgres")["mol-bk-pg1"]
    assert again.get("changed") is False and not again.get("failed"), again
    count = sql(primary, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'p17_events'::regclass")
    assert int(count) >= 4  # this month, the one before it is not made, two ahead, the default
    rls = {"login_db": "postgres", "table": "p17_events", "rls": "enabled", "login_unix_socket": "/var/run/postgresql",
           "policies": [{"name": "tenant_rows", "using": "tenant = current_setting('app.tenant', true)::int"}]}
    first = adhoc("mol-bk-pg1", "pgfleet.core.pg_rls_policy", rls, "postgres")["mol-bk-pg1"]
    assert first.get("changed") and not first.get("failed"), first
    assert adhoc("mol-bk-pg1", "pgfleet.core.pg_rls_policy", rls, "postgres")["mol-bk-pg1"].get("changed") is False
    assert sql(primary, "SELECT relrowsecurity FROM pg_class WHERE oid = 'p17_events'::regclass") == "t"
