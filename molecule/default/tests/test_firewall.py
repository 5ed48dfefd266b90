"""The host firewall (roles/firewall) on the converged lab fleet, probed from hosts inside
and outside each allowed set: the exporters answer only the monitoring host, a port no role
serves answers nobody, bad input is refused with the running rules untouched, and a table
deleted by hand comes back with the next run."""

import json
import os
import re

import pytest

from conftest import hosts_of, run_playbook

FIREWALL_ONLY = os.path.join(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", ""), "firewall_only.yml")
PROBE = "timeout 3 bash -c 'echo > /dev/tcp/%s/%s'"


def reaches(client, server, port):
    """Whether CLIENT completes a TCP handshake with SERVER:PORT within 3 s (a dropped SYN
    times out; nothing here answers with a reset)."""
    return client.run(PROBE, server.backend.get_hostname(), str(port)).rc == 0


def ruleset(host):
    """The live table without its counter's figures."""
    return re.sub(r"packets \d+ bytes \d+", "", host.check_output("nft list table inet pgfleet"))


def dropped(host):
    """Packets the table's final counter has seen (what no rule accepted)."""
    listing = json.loads(host.check_output("nft -j list table inet pgfleet"))["nftables"]
    return sum(expr["counter"]["packets"] for item in listing if "rule" in item
               for expr in item["rule"]["expr"] if "counter" in expr)


@pytest.fixture(name="monitor", scope="module")
def fixture_monitor():
    return hosts_of("monitoring")[0]


@pytest.fixture(name="outsider", scope="module")
def fixture_outsider():
    return hosts_of("redis")[0]  # on the fleet's network, not a monitoring host


def test_every_host_loads_its_table_at_boot():
    for host in hosts_of("all"):
        unit = host.service("pgfleet-firewall")
        assert unit.is_enabled and unit.is_running, host.backend.get_hostname()
        assert "policy drop;" in host.check_output("nft list table inet pgfleet")
        rules = host.file("/etc/nftables.d/pgfleet.nft")
        assert (rules.user, rules.mode) == ("root", 0o600)


def test_exporters_answer_the_monitoring_host_only(primary, monitor, outsider):
    before = dropped(primary)
    assert reaches(monitor, primary, 9187) and reaches(monitor, primary, 9100)
    assert not reaches(outsider, primary, 9187) and not reaches(outsider, primary, 9100)
    assert dropped(primary) > before
    # The exporter listens all along: the host itself reaches it on the same address.
    assert reaches(primary, primary, 9187)


def test_a_port_no_role_serves_answers_nobody(primary, replicas, monitor):
    server = replicas[0]
    server.check_output("systemd-run --unit pgfleet-probe-listener python3 -m http.server 9999")
    try:
        assert reaches(server, server, 9999)
        assert not reaches(primary, server, 9999) and not reaches(monitor, server, 9999)
    finally:
        server.run("systemctl stop pgfleet-probe-listener")


def test_clients_still_reach_what_they_use(primary, monitor, outsider):
    bouncer = hosts_of("pgbouncer")[0]
    assert reaches(outsider, primary, 5432) and reaches(outsider, bouncer, 6432)
    assert reaches(primary, outsider, 6379)


def test_a_bad_rule_is_refused_naming_it_and_the_rules_stay(primary):
    name = primary.backend.get_hostname()
    before = ruleset(primary)
    bad = {"firewall_extra_rules": [{"why": "typo", "ports": [5999], "cidrs": ["10.0.0.300/24"]}]}
    report = run_playbook(FIREWALL_ONLY, "--limit", name, "-e", json.dumps(bad), expect_success=False)
    assert report["rc"] != 0
    assert "10.0.0.300/24" in json.dumps(report)
    assert ruleset(primary) == before
    assert "10.0.0.300" not in primary.file("/etc/nftables.d/pgfleet.nft").content_string


def test_a_table_deleted_by_hand_comes_back(replicas):
    host = replicas[-1]
    before = ruleset(host)
    host.check_output("nft delete table inet pgfleet")
    report = run_playbook(FIREWALL_ONLY, "--limit", host.backend.get_hostname())
    assert report["stats"][host.backend.get_hostname()]["changed"] == 1
    assert ruleset(host) == before
