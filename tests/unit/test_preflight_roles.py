"""The preflight role checks, before any host is contacted, what each role site.yml runs
needs from the inventory: its list of roles must name every role site.yml runs, and its
filter keeps exactly the options an inventory has to provide."""

import os
import re

import pytest
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
