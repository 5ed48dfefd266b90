"""The preflight role checks, before any host is contacted, what each role site.yml runs
needs from the inventory: its list of roles must name every role site.yml runs, and its
filter keeps exactly the options an inventory has to provide."""

import os
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.pgfleet.core.plugins.filter.argument_spec import required_options

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
# Helpers site.yml enters for a step of another role's work, not roles of their own on a host.
HELPERS = {"preflight", "postgresql_core"}


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_preflight_names_every_role_site_yml_runs():
    ran = set(re.findall(r"(?:name:|-) pgfleet\.core\.(\w+)\s*$", read("playbooks", "site.yml"), re.M)) - HELPERS
    checked = set(re.findall(r"'(\w+)'", read("roles", "preflight", "vars", "main.yml")))
    assert ran and ran <= checked, f"site.yml runs roles preflight does not check: {sorted(ran - checked)}"


def site_yml_role_tags():
    """{role: tags of the play that runs it} for each role site.yml runs (roles: or include_role)."""
    found = {}
    for play in yaml.safe_load(read("playbooks", "site.yml")):
        assert play.get("tags"), f"site.yml's play '{play['name']}' has no tags: --tags could not select or skip it"
        names = [r if isinstance(r, str) else r["role"] for r in play.get("roles", [])]
        # A role's own run, not one of its steps (tasks_from: validate, leader, restart) used elsewhere.
        names += [t["ansible.builtin.include_role"]["name"] for t in play.get("tasks", [])
                  if "tasks_from" not in t.get("ansible.builtin.include_role", {"tasks_from": None})]
        for name in names:
            role = name.split(".")[-1]
            if role not in HELPERS:
                found.setdefault(role, set()).update(play["tags"])
    return found


def test_preflight_checks_the_roles_the_run_tags_select():
    """preflight_role_tags names the tag of the play that runs each role, so --tags X checks X's roles."""
    preflight = yaml.safe_load(read("roles", "preflight", "vars", "main.yml"))["preflight_role_tags"]
    site = site_yml_role_tags()
    # patroni runs inside postgresql_server's play (pg_ha: patroni); every other role is a play's own.
    assert {role: {tag} for role, tag in preflight.items() if role != "patroni"} == site
    assert preflight["patroni"] == preflight["postgresql_server"]


def test_required_options_keeps_required_ones_and_lists_with_required_fields():
    options = {
        "redis_admin_password": {"type": "str", "required": True, "no_log": True},
        "redis_maxmemory": {"type": "str", "default": "64mb"},
        "redis_users": {"type": "list", "elements": "dict", "default": [],
                        "options": {"name": {"type": "str", "required": True}, "keys": {"type": "str"}}},
        "redis_acl": {"type": "dict", "options": {"deep": {"type": "dict", "options": {"x": {"required": True}}}}},
        "redis_tls": {"type": "dict", "options": {"port": {"type": "int"}}},
    }
    assert list(required_options(options)) == ["redis_admin_password", "redis_users", "redis_acl"]
    assert required_options({}) == {}


@pytest.mark.parametrize("bad", [None, ["redis_admin_password"], {"redis_admin_password": "str"}])
def test_anything_but_an_options_mapping_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="required_options expects"):
        required_options(bad)
