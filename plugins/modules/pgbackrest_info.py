#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_info
short_description: Backup status of a pgBackRest stanza
version_added: 0.1.0
description:
  - Reads C(pgbackrest info --output=json) for one stanza and returns what monitoring,
    alerts and restore playbooks act on - the stanza status, the newest backup of each
    type per repository with its age, and the WAL archive range. Changes nothing.
extends_documentation_fragment:
  - pgfleet.core.pgbackrest
  - pgfleet.core.attributes.info
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Read the backup status
  pgfleet.core.pgbackrest_info:
    stanza: main
  become: true
  register: backrest

- name: Refuse a restore drill without a full backup of the last week
  ansible.builtin.assert:
    that: (backrest.info.repos[0].last_backup.full.age_seconds | default(none)) is not none
          and backrest.info.repos[0].last_backup.full.age_seconds < 7 * 86400
"""

RETURN = r"""
info:
  description: Summary of C(pgbackrest info --output=json) for the stanza.
  returned: always
  type: dict
  contains:
    stanza: {description: Stanza name., type: str, returned: always}
    status: {description: "Stanza status C(code) and C(message) (0 ok, 1 missing stanza path,
      2 no valid backups, 3 missing stanza data, ...).", type: dict, returned: always}
    exists: {description: Whether the repository holds the stanza., type: bool, returned: always}
    backup_running: {description: Whether a backup holds the stanza's lock., type: bool, returned: always}
    cipher: {description: Repository cipher., type: str, returned: always}
    db: {description: "Databases the stanza has backed up: id, repo_key, system_id, version.",
      type: list, elements: dict, returned: always}
    repos:
      description: "Per repository: key, cipher, status, backup_count, archive (min, max WAL
        segment), last_backup (full, diff, incr: each null or label, type, start, stop,
        stop_epoch, age_seconds, size, delta, repo_size, error, wal_start, wal_stop)."
      type: list
      elements: dict
      returned: always
    archive: {description: WAL segments archived (min and max over all repositories)., type: dict, returned: always}
  sample:
    stanza: main
    status: {code: 0, message: ok}
    exists: true
    repos:
      - key: 1
        status: {code: 0, message: ok}
        last_backup:
          full: {label: 20261122-055747F, stop: "2026-11-22T05:57:50Z", age_seconds: 3600, size: 22992647, error: false}
          diff: null
          incr: null
        archive: {min: "000000010000000000000001", max: "000000010000000000000003"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure, run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import (
    PgBackRest, PgBackRestError, backrest_argument_spec, summarize_info,
)


def main():
    module = AnsibleModule(argument_spec=backrest_argument_spec(), supports_check_mode=True)
    run_guarded(module, lambda: report(module))


def report(module):
    backrest = PgBackRest.for_module(module)
    try:
        info = summarize_info(backrest.info(module.params["stanza"]))
    except PgBackRestError as e:
        raise ModuleFailure(**e.result("pgbackrest info failed for stanza %r" % module.params["stanza"])) from None
    module.exit_json(changed=False, info=info)


if __name__ == "__main__":
    main()
