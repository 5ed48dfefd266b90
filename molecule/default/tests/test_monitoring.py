"""The monitoring host (sharing mol-bouncer1): Prometheus scrapes every exporter of the fleet
over TLS with basic auth, a stopped replica raises its alerts in Alertmanager, a slow
statement shows up in the metrics, and every dashboard query answers; the exporters listen
on private addresses only and refuse anyone without the password. Grafana's provisioning
files name this Prometheus and the dashboards."""

import json
import os
import re
import time
import urllib.parse

import pytest
import yaml
from conftest import PG, changed_tasks, psql, run_playbook, secret, wait_for

from fleet import hosts_of, https_get

CA = "/etc/prometheus/tls/root.crt"
DASHBOARDS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "monitoring", "files", "dashboards")


@pytest.fixture(scope="module")
def monitor():
    (host,) = hosts_of("monitoring")
    return host


def credentials(password=None):
    return "prometheus:" + (secret("exporters_basic_auth_password") if password is None else password)


def api(monitor, path, port=9090):
    url = f"https://{monitor.backend.get_hostname()}:{port}{path}"
    status, body = https_get(monitor, url, CA, credentials())
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def query(monitor, expr):
    return api(monitor, "/api/v1/query?query=" + urllib.parse.quote(expr))["data"]["result"]


def names(group):
    return [h.backend.get_hostname() for h in hosts_of(group)]


def firing(monitor):
    """{(alertname, instance)} of the alerts Alertmanager holds as active."""
    alerts = api(monitor, "/api/v2/alerts?active=true&silenced=false&inhibited=false", port=9093)
    return {(a["labels"]["alertname"], a["labels"].get("instance", "")) for a in alerts}


def test_every_exporter_of_the_fleet_is_scraped_and_up(monitor):
    node_hosts = sorted(set(names("postgres") + names("pgbouncer") + names("redis") + names("monitoring")))
    expected = ({("node", f"{h}:9100") for h in node_hosts} | {("postgres", f"{h}:9187") for h in names("postgres")}
                | {("pgbouncer", f"{h}:9127") for h in names("pgbouncer")} | {("redis", f"{h}:9121") for h in names("redis")}
                | {("prometheus", f"{names('monitoring')[0]}:9090"), ("alertmanager", f"{names('monitoring')[0]}:9093")})

    def targets():
        active = api(monitor, "/api/v1/targets?state=active")["data"]["activeTargets"]
        return {(t["labels"]["job"], t["labels"]["instance"]): (t["health"], t["lastError"]) for t in active}

    assert wait_for(lambda: set(targets()) == expected and all(health == "up" for health, _error in targets().values()),
                    timeout=90, step=2), targets()
    rules = [r for g in api(monitor, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    assert len(rules) == 32 and all(r["health"] == "ok" for r in rules), rules
    # The lab's override of a `for:` window reached the rules.
    assert {r["name"]: r["duration"] for r in rules}["PostgresDown"] == 15


def test_exporters_are_private_tls_only_and_ask_for_the_password(primary, replicas):
    for host in [primary, *replicas]:
        name = host.backend.get_hostname()
        (private,) = [a for a in host.interface("eth0").addresses if ":" not in a]
        for unit, port in (("prometheus-node-exporter", 9100), ("prometheus-postgres-exporter", 9187)):
            assert host.service(unit).is_running and host.service(unit).is_enabled
            assert host.socket(f"tcp://{private}:{port}").is_listening
            assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
            show = host.check_output("systemctl show -p User -p NoNewPrivileges -p ProtectSystem %s", unit)
            assert set(show.split()) >= {"User=prometheus", "NoNewPrivileges=yes", "ProtectSystem=strict"}, show
            url = f"https://{name}:{port}/metrics"
            assert https_get(host, url, CA, credentials())[0] == 200
            assert https_get(host, url, CA, credentials("not-the-password"))[0] == 401
            assert https_get(host, url, CA)[0] == 401
            # Plain HTTP gets Go's "400: an HTTP request to an HTTPS server", never the metrics.
            status, body = https_get(host, f"http://{name}:{port}/metrics", CA, credentials())
            assert status == 400 and "# HELP" not in body, (status, body[:200])
        web = host.file("/etc/prometheus/pgfleet-web.yml")
        assert (web.user, web.group, web.mode) == ("root", "prometheus", 0o640)
        assert "$2b$10$" in web.content_string and secret("exporters_basic_auth_password") not in web.content_string
        # postgres_exporter logs in by peer authentication: no password anywhere.
        env = [line for line in host.file("/etc/default/prometheus-postgres-exporter").content_string.splitlines()
               if not line.startswith("#")]
        assert "user=prometheus" in env[0] and not any("password" in line.lower() for line in env), env


def test_redis_exporter_wants_a_client_certificate(monitor):
    (redis,) = hosts_of("redis")
    url = f"https://{redis.backend.get_hostname()}:9121/metrics"
    assert https_get(redis, url, CA)[0] == 0  # no client certificate: no TLS session
    assert query(monitor, 'redis_up{job="redis"}')[0]["value"][1] == "1"  # Prometheus presents its own


def test_a_slow_statement_shows_up_in_the_metrics(primary, monitor):
    for _call in range(4):
        psql(primary, "SELECT pg_sleep(0.5)", db="payments_db")

    def metric(name):
        result = query(monitor, name + '{query=~".*pg_sleep.*", datname="payments_db"}')
        return result and float(result[0]["value"][1])

    # A scrape may land between two of the calls: wait for one taken after all four.
    assert wait_for(lambda: (metric("pgfleet_statement_calls") or 0) >= 4, timeout=60, step=2)
    seconds = metric("pgfleet_statement_p95_seconds")
    assert seconds and 0.45 <= seconds < 2, seconds


def test_a_stopped_replica_raises_its_alerts(primary, replicas, monitor):
    down = replicas[-1]
    instance = down.backend.get_hostname() + ":9187"
    primary_instance = primary.backend.get_hostname() + ":9187"
    assert not {("PostgresDown", instance), ("PostgresReplicaCountDropped", primary_instance)} & firing(monitor)
    down.run_expect([0], f"systemctl stop {PG['service']}")
    start = time.monotonic()
    try:
        wanted = {("PostgresDown", instance), ("PostgresReplicaCountDropped", primary_instance)}
        assert wait_for(lambda: wanted <= firing(monitor), timeout=120, step=2), firing(monitor)
        print(f"\nalerts for a stopped replica in Alertmanager after {time.monotonic() - start:.1f} s "
              "(lab: 5 s scrapes and evaluations, for: 15s, group_wait 5s)")
    finally:
        down.run_expect([0], f"systemctl start {PG['service']}")
        wait_for(lambda: psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                 == str(len(replicas)), timeout=60)
    assert wait_for(lambda: not query(monitor, 'ALERTS{alertname=~"PostgresDown|PostgresReplicaCountDropped"}'),
                    timeout=90, step=2), "the alerts did not resolve once the replica was back"


def test_every_dashboard_query_answers(monitor):
    files = sorted(f for f in os.listdir(DASHBOARDS) if f.endswith(".json"))
    assert files == ["pgfleet-backups.json", "pgfleet-pgbouncer.json", "pgfleet-postgresql.json", "pgfleet-redis.json"]
    empty = []
    for name in files:
        with open(os.path.join(DASHBOARDS, name), encoding="utf-8") as f:
            text = f.read()
        assert monitor.file("/var/lib/pgfleet/dashboards/" + name).content_string == text
        for panel in json.loads(text)["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")
                if not query(monitor, expr):  # a PromQL error fails inside api()
                    empty.append((name, panel["title"]))
    # This fleet has no pgBackRest repository: only the backups dashboard may lack data,
    # except its WAL archiving panel, which the PostgreSQL hosts feed.
    assert all(name == "pgfleet-backups.json" for name, _title in empty), empty
    assert ("pgfleet-backups.json", "WAL archiving failing") not in empty


def test_grafana_provisioning_names_this_prometheus_and_the_dashboards(monitor):
    """Grafana is no Debian package and does not run here: what its provisioning files say is
    used against the real Prometheus instead (URL, user, the CA file and the password the
    named environment variable must hold), and the provider's path holds the dashboards."""
    base = "/var/lib/pgfleet/grafana-provisioning"
    text = monitor.file(base + "/datasources/pgfleet.yml").content_string
    password = secret("exporters_basic_auth_password")
    assert password not in text
    (source,) = yaml.safe_load(text)["datasources"]
    assert (source["type"], source["access"], source["basicAuth"], source["jsonData"]["tlsAuthWithCACert"]) == \
        ("prometheus", "proxy", True, True)
    assert source["secureJsonData"]["basicAuthPassword"] == "${PGFLEET_PROMETHEUS_PASSWORD}"
    ca = re.fullmatch(r"\$__file\{(.+)\}", source["secureJsonData"]["tlsCACert"]).group(1)
    status, body = https_get(monitor, source["url"] + "/api/v1/query?query=up", ca,
                             f"{source['basicAuthUser']}:{password}")
    assert status == 200 and json.loads(body)["status"] == "success", (status, body[:300])
    assert https_get(monitor, source["url"] + "/api/v1/query?query=up", ca)[0] == 401
    (provider,) = yaml.safe_load(monitor.file(base + "/dashboards/pgfleet.yml").content_string)["providers"]
    assert provider["type"] == "file"
    listed = monitor.check_output("ls %s", provider["options"]["path"]).split()
    assert sorted(listed) == sorted(f for f in os.listdir(DASHBOARDS) if f.endswith(".json"))


def test_the_performance_report_renders_with_real_numbers(primary, tmp_path):
    psql(primary, "SELECT pg_sleep(0.2)", db="profile_db")
    report = run_playbook("performance_report.yml", "-e", f"report_dest={tmp_path}")
    name = primary.backend.get_hostname()
    files = sorted(os.listdir(tmp_path / name))
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    assert files == sorted(f"{db}-{stamp}.md" for db in ("auth_db", "payments_db", "admin_db", "profile_db")), files
    text = (tmp_path / name / f"profile_db-{stamp}.md").read_text(encoding="utf-8")
    assert text.startswith(f"# Performance report: profile_db on {name}")
    for title in ("Growth since the last report", "Top statements by total time", "Top statements by mean time",
                  "Index usage", "Unused indexes", "Sequential scans on large tables", "Table bloat (estimate)",
                  "Index bloat (estimate, B-tree)"):
        assert f"\n## {title}\n" in text, title
    assert "SELECT pg_sleep($1)" in text and "Database size" in text
    # The replicas leave the report to the primary, and the monthly timer is armed everywhere.
    changed = changed_tasks(report)
    assert f"{name}: Write the reports (the primary; a standby skips)" in changed
    assert all(task.startswith(name + ":") for task in changed), changed
    for host in hosts_of("postgres"):
        assert host.service("pgfleet-performance-report.timer").is_enabled
