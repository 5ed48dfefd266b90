"""The monitoring role's alert rules, rendered with the role's defaults, checked and unit
tested by Prometheus' own promtool (Debian's prometheus package, lab/prereqs.sh)."""

import os
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TEMPLATE = os.path.join(ROOT, "roles", "monitoring", "templates", "pgfleet-alerts.yml.j2")
DEFAULTS = os.path.join(ROOT, "roles", "monitoring", "defaults", "main.yml")
TESTS = os.path.join(os.path.dirname(__file__), "promtool", "pgfleet-alerts.test.yml")


def render(**overrides):
    """Render the rules as Ansible would, with the delimiters its #jinja2 header sets."""
    with open(TEMPLATE, encoding="utf-8") as f:
        header, body = f.read().split("\n", 1)
    settings = dict(re.findall(r"(\w+):'([^']*)'", header))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, **settings)
    env.filters["combine"] = lambda a, b: {**a, **b}  # Ansible's, for two flat dicts
    with open(DEFAULTS, encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    context = {k: v for k, v in defaults.items() if k.startswith("monitoring_alert") or k == "monitoring_ignored_fstypes"}
    context.update(overrides)
    return env.from_string(body).render(**context)


@pytest.fixture
def rules_dir(tmp_path):
    (tmp_path / "pgfleet-alerts.yml").write_text(render(), encoding="utf-8")
    shutil.copy(TESTS, tmp_path / "pgfleet-alerts.test.yml")
    return tmp_path


def promtool(*args, cwd):
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_rules_pass_promtool_check(rules_dir):
    out = promtool("check", "rules", "pgfleet-alerts.yml", cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 32 rules found" in out.stdout


def test_every_rule_has_unit_tests_that_pass(rules_dir):
    rules = yaml.safe_load((rules_dir / "pgfleet-alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((rules_dir / "pgfleet-alerts.test.yml").read_text(encoding="utf-8"))
    cases = [c for t in tests["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    stays_quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts == set(load_defaults()["monitoring_alert_for"]), "every alert needs a `for:` default"
    assert alerts - fires == set(), "alerts without a test that fires them"
    assert alerts - stays_quiet == set(), "alerts without a test that they stay quiet"
    out = promtool("test", "rules", "pgfleet-alerts.test.yml", cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lab_overrides_of_for_reach_the_rules():
    rules = yaml.safe_load(render(monitoring_alert_for_overrides={"PostgresReplicaCountDropped": "10s"},
                                  monitoring_alert_threshold_overrides={"replication_lag_seconds": 5}))
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["PostgresReplicaCountDropped"]["for"] == "10s"
    assert by_name["PostgresDown"]["for"] == "1m"  # the others keep their defaults
    assert by_name["PostgresReplicationLagHigh"]["expr"] == "pgfleet_replica_lag_seconds > 5"


def test_a_broken_rule_fails_the_check(tmp_path):
    broken = render().replace("expr: pg_up == 0", "expr: pg_up == ")
    (tmp_path / "pgfleet-alerts.yml").write_text(broken, encoding="utf-8")
    out = promtool("check", "rules", "pgfleet-alerts.yml", cwd=tmp_path)
    assert out.returncode != 0 and "pgfleet-alerts.yml" in out.stdout + out.stderr


def load_defaults():
    with open(DEFAULTS, encoding="utf-8") as f:
        return yaml.safe_load(f)
