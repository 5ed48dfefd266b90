# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  stanza:
    description: Stanza name (letters, digits, C(.), C(_), C(-); starting with a letter or digit; at most 64 characters).
    type: str
    required: true
  config:
    description: pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  options:
    description:
      - Extra pgBackRest options, a mapping of option name to value, given to every command
        as C(PGBACKREST_<NAME>) environment variables (C(true)/C(false) become C(y)/C(n)), so
        a command that does not take an option ignores it. Keep secrets in I(config).
    type: dict
    default: {}
  os_user:
    description:
      - OS user that owns the repository and the cluster; pgBackRest runs as this user
        (with C(runuser) when the module runs as root).
    type: str
    default: postgres
  executable:
    description: The pgbackrest program.
    type: str
    default: pgbackrest
requirements:
  - pgBackRest 2.45 or later on the host (Debian package pgbackrest)
"""
