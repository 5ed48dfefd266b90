# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over role argument specs."""

from __future__ import annotations

DOCUMENTATION = r"""
name: required_options
short_description: The options of a role's argument spec that an inventory must provide
version_added: 0.1.0
description:
  - From the options of one entry point of a role's C(meta/argument_specs.yml), keeps those
    marked C(required) and those whose elements or suboptions have required fields (a list
    of users each needing a password), with their specs unchanged.
  - The preflight role validates exactly these before any host is contacted, so an option
    whose value needs the host's facts is not evaluated there.
options:
  _input:
    description: The C(options) mapping of one entry point.
    type: dict
    required: true
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: The options the redis role needs from the inventory
  ansible.builtin.debug:
    msg: "{{ (lookup('ansible.builtin.file', 'roles/redis/meta/argument_specs.yml') | from_yaml).argument_specs.main.options
             | pgfleet.core.required_options }}"
"""

RETURN = r"""
_value:
  description: The kept options, name to spec.
  type: dict
"""

from ansible.errors import AnsibleFilterError


def _needs_input(spec):
    if spec.get("required"):
        return True
    return any(_needs_input(sub) for sub in (spec.get("options") or {}).values())


def required_options(options):
    """Return the OPTIONS (name -> spec) that are required or have required suboptions."""
    if not isinstance(options, dict) or not all(isinstance(spec, dict) for spec in options.values()):
        raise AnsibleFilterError(f"required_options expects the options mapping of an argument spec, got {options!r}")
    return {name: spec for name, spec in options.items() if _needs_input(spec)}


class FilterModule:
    def filters(self):
        return {"required_options": required_options}
