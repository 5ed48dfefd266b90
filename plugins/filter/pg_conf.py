# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that render values for postgresql.conf."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pg_conf_value
short_description: Render a value as postgresql.conf expects it
version_added: 0.1.0
description:
  - Booleans become C(on)/C(off), integers and floats stay bare, anything else is a
    single-quoted string. PostgreSQL's configuration parser reads backslash escapes
    inside quotes, so backslashes are doubled, and so are single quotes.
options:
  _input:
    description: The value of one postgresql.conf parameter.
    type: raw
    required: true
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Render a parameter line
  ansible.builtin.debug:
    msg: "shared_preload_libraries = {{ 'pg_stat_statements' | pgfleet.core.pg_conf_value }}"
"""

RETURN = r"""
_value:
  description: The value as it may stand on the right of C(=) in postgresql.conf.
  type: str
"""

from ansible.errors import AnsibleFilterError


def pg_conf_value(value):
    """Return VALUE formatted for the right-hand side of a postgresql.conf line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value or "\0" in value:
            raise AnsibleFilterError("pg_conf_value: a postgresql.conf value cannot contain a line break or NUL: %r" % value)
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    raise AnsibleFilterError("pg_conf_value: unsupported value %r of type %s" % (value, type(value).__name__))


class FilterModule:
    def filters(self):
        return {"pg_conf_value": pg_conf_value}
