# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters about the host's installed packages."""

from __future__ import annotations

DOCUMENTATION = r"""
name: packages_missing
short_description: The packages of a list that the host's package facts do not list
version_added: 0.1.0
description:
  - Returns the names in the list that C(ansible_facts.packages) (gathered by
    M(ansible.builtin.package_facts), as site.yml does once per host) does not list. Without
    package facts every name is returned, so an install task guarded by this filter runs as
    it would without it.
  - The roles guard their package installs with it, so on a converged host the apt module's
    look into the package cache (about a second per task) is skipped.
  - A name with a version or architecture (C(name=1.0), C(name:amd64)) or a virtual package
    is never listed by name in the facts, so it is returned and the install runs.
options:
  _input:
    description: A package name or a list of them.
    type: raw
    required: true
  facts:
    description: The host's C(ansible_facts).
    type: dict
    required: true
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Install nftables unless it is installed
  ansible.builtin.apt:
    name: "{{ firewall_apt_packages }}"
    state: present
  vars:
    firewall_apt_packages: [nftables]
  when: firewall_apt_packages | pgfleet.core.packages_missing(ansible_facts) | length > 0
"""

RETURN = r"""
_value:
  description: The names the facts do not list as installed, in the order given.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError


def packages_missing(names, facts):
    """Return the names in NAMES that FACTS['packages'] does not list (all of them without package facts)."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise AnsibleFilterError(f"packages_missing expects a package name or a list of names, got {names!r}")
    installed = (facts or {}).get("packages") or {}
    return [name for name in names if name not in installed]


class FilterModule:
    def filters(self):
        return {"packages_missing": packages_missing}
