"""The firewall role reads each serving role's ports and switches from that role's own
defaults (one source of truth): every name its rules use must be a plain number or boolean
default of a role it reads, or a renamed variable would silently fall back to nothing."""

import os
import re

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
ROLE = os.path.join(ROOT, "roles", "firewall")


def read_yaml(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_every_setting_the_rules_use_is_a_plain_default_of_a_role_read():
    tasks = read_yaml(ROLE, "tasks", "main.yml")
    (read,) = [task["loop"] for task in tasks if task["name"] == "Read the serving roles' default ports"]
    defaults = {}
    for role in read:
        defaults.update(read_yaml(ROOT, "roles", role, "defaults", "main.yml"))
    plain = {name for name, value in defaults.items() if isinstance(value, (int, bool))}
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as f:
        used = set(re.findall(r"\bs\.([a-z_]+)", f.read()))
    assert len(used) >= 15, used
    assert sorted(used - plain) == []


def test_the_groups_that_connect_are_the_inventory_groups_the_roles_use():
    groups = read_yaml(ROLE, "vars", "main.yml")["firewall_fleet_groups"]
    with open(os.path.join(ROOT, "playbooks", "site.yml"), encoding="utf-8") as f:
        site = f.read()
    for group in groups:
        assert re.search(rf"hosts: {group}\b|groups\['{group}'\]", site), group
