#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_stanza
short_description: A pgBackRest stanza, declaratively, with its backup status
version_added: 0.1.0
description:
  - Creates, upgrades, checks or deletes a pgBackRest stanza and returns a summary of
    C(pgbackrest info --output=json) (status, last backup of each type per repository
    with its age, WAL archive range) for monitoring and restore playbooks.
  - Whether the stanza exists is read from C(pgbackrest info), so a second run is no
    change. The repository (posix path, a repository host, S3) is whatever the
    pgBackRest configuration says; the module passes I(config) and I(options) through.
  - pgBackRest's errors are recognised by their code and returned as I(error_kind) with
    what to do: a system identifier mismatch after a re-initdb, archive_command not
    calling pgBackRest, archive_mode off, a WAL segment not archived in time, an
    unreachable repository or PostgreSQL.
  - The commands run as I(os_user) (C(runuser) when the module runs as root), so files in
    the repository keep the owner pgBackRest expects.
options:
  stanza:
    description: Stanza name (letters, digits, C(.), C(_), C(-); at most 64 characters).
    type: str
    required: true
  state:
    description:
      - C(present) creates the stanza if the repository does not have it (C(stanza-create));
        an existing stanza is verified against the cluster with the same command.
      - C(upgraded) runs C(stanza-upgrade) (after a major upgrade or a re-initdb); changed
        when the repository's database list changed.
      - C(checked) runs C(pgbackrest check) (the configuration, and that a WAL segment is
        archived); never a change, fails with pgBackRest's message and a remedy.
      - C(absent) stops the stanza and deletes it and all its backups (C(stop),
        C(stanza-delete --force)); only with I(force=true).
      - C(info) only reads the status.
    type: str
    choices: [present, upgraded, checked, absent, info]
    default: present
  force:
    description: Required with C(state=absent), which deletes every backup of the stanza.
    type: bool
    default: false
  config:
    description: pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  options:
    description:
      - Extra pgBackRest options for every command, as C(name: value) (C(--name=value);
        C(true)/C(false) give C(--name)/C(--no-name)). pgBackRest refuses secrets on the
        command line; keep them in I(config).
    type: dict
    default: {}
  os_user:
    description: OS user that owns the repository and the cluster.
    type: str
    default: postgres
  executable:
    description: The pgbackrest program.
    type: str
    default: pgbackrest
notes:
  - Check mode reads C(pgbackrest info) and predicts; it runs no other pgBackRest command.
    A stanza whose database no longer matches is found by C(present) and C(checked) only
    outside check mode.
seealso:
  - name: pgBackRest command reference
    description: What each command does.
    link: https://pgbackrest.org/command.html
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Create the stanza (no change when it exists)
  pgfleet.core.pgbackrest_stanza:
    stanza: main
  become: true

- name: Fail with the remedy when WAL archiving is broken
  pgfleet.core.pgbackrest_stanza:
    stanza: main
    state: checked
  become: true

- name: Last full backup's age, for an alert or a restore
  pgfleet.core.pgbackrest_stanza:
    stanza: main
    state: info
  become: true
  register: backrest

- name: Delete the stanza and every backup in it
  pgfleet.core.pgbackrest_stanza:
    stanza: old
    state: absent
    force: true
  become: true
"""

RETURN = r"""
commands:
  description: The pgBackRest command lines run (or that would run, in check mode). The
    read-only C(info) calls are not listed.
  returned: always
  type: list
  elements: str
  sample: ["pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=main stanza-create"]
info:
  description: Summary of C(pgbackrest info) after the run.
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
error_kind:
  description: On failure, what kind of pgBackRest error it was (system_identifier_mismatch,
    archive_command_not_pgbackrest, archive_disabled, archive_timeout, repo_unreachable,
    postgres_unreachable, stanza_stopped, lock_held).
  returned: failure
  type: str
remedy:
  description: On a recognised failure, what to do about it.
  returned: failure
  type: str
"""

import configparser
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.os_user import OsUser
from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import (
    STANZA_RE, PgBackRest, PgBackRestError, summarize_info,
)


def local_cluster(module, stanza):
    """(system identifier, major version) of the stanza's pg1-path when it is on this host."""
    p = module.params
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(p["config"])
    path = p["options"].get("pg1-path")
    for section in (stanza, "global"):
        if path is None and parser.has_option(section, "pg1-path"):
            path = parser.get(section, "pg1-path")
    host = p["options"].get("pg1-host") or any(parser.has_option(s, "pg1-host") for s in (stanza, "global"))
    try:
        with open(os.path.join(path, "PG_VERSION")) as f:
            version = f.read().strip()
    except (OSError, TypeError):
        return None
    if host:
        return None
    rc, out, err = module.run_command(["/usr/lib/postgresql/%s/bin/pg_controldata" % version, path],
                                      environ_update=dict(LC_ALL="C"))
    match = re.search(r"^Database system identifier:\s+(\d+)", out, re.M)
    return (match.group(1), version) if rc == 0 and match else None


def diff_view(info):
    return dict(exists=info["exists"], status=info["status"]["message"],
                db=[dict(system_id=d["system_id"], version=d["version"]) for d in info["db"]])


class Stanza:
    def __init__(self, module, backrest):
        self.module = module
        self.backrest = backrest
        self.stanza = module.params["stanza"]
        self.flag = "--stanza=%s" % self.stanza

    def info(self):
        return summarize_info(self.backrest.info(self.stanza))

    def command(self, *args):
        """Run a pgBackRest command unless in check mode (it is listed either way)."""
        if self.module.check_mode:
            self.backrest.commands.append(" ".join(self.backrest.base + [self.flag] + list(args)))
            return
        self.backrest.run(self.flag, *args)

    def present(self, before):
        # stanza-create is idempotent: on an existing stanza it verifies the repository
        # against the cluster and fails with [028] when they no longer match.
        self.command("stanza-create")
        return not before["exists"]

    def upgraded(self, before):
        if not before["exists"]:
            self.module.fail_json(msg="stanza %r does not exist in the repository; create it with state=present"
                                  % self.stanza, commands=self.backrest.commands, info=before)
        self.command("stanza-upgrade")
        if self.module.check_mode:
            return self.upgrade_needed(before)
        return None  # decided by comparing the database list before and after

    def upgrade_needed(self, before):
        """Check mode: compare the local cluster (pg1-path) with the stanza's current database."""
        local = local_cluster(self.module, self.stanza)
        if local is None:
            self.module.warn("check mode cannot predict stanza-upgrade: pg1-path is not a local data directory")
            return False
        current = before["db"][-1] if before["db"] else {}
        return (current.get("system_id"), current.get("version")) != local

    def checked(self, before):
        if not self.module.check_mode:
            self.backrest.run(self.flag, "check")
        return False

    def absent(self, before):
        if not self.module.params["force"]:
            self.module.fail_json(
                msg="refusing to delete stanza %r and every backup in it without force=true; nothing was changed"
                % self.stanza, commands=[], info=before)
        if not before["exists"]:
            return False
        self.command("stop")
        self.command("stanza-delete", "--force")
        return True

    def info_only(self, before):
        return False


def main():
    module = AnsibleModule(
        argument_spec=dict(
            stanza=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "upgraded", "checked", "absent", "info"]),
            force=dict(type="bool", default=False),
            config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
            options=dict(type="dict", default={}),
            os_user=dict(type="str", default="postgres"),
            executable=dict(type="str", default="pgbackrest"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not STANZA_RE.match(p["stanza"]):
        module.fail_json(msg="stanza: %r is not a valid stanza name (letters, digits, '.', '_', '-'; "
                             "starting with a letter or digit; at most 64 characters)" % p["stanza"])
    try:
        backrest = PgBackRest(module.run_command, OsUser(p["os_user"]), p["executable"], p["config"], p["options"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    stanza = Stanza(module, backrest)
    action = dict(present=stanza.present, upgraded=stanza.upgraded, checked=stanza.checked,
                  absent=stanza.absent, info=stanza.info_only)[p["state"]]
    before = None
    try:
        before = stanza.info()
        changed = action(before)
        after = before if module.check_mode or not backrest.commands else stanza.info()
    except PgBackRestError as e:
        result = dict(msg="pgbackrest %s failed for stanza %r: %s" % (p["state"], p["stanza"], e.message),
                      rc=e.rc, error_code=e.code, commands=backrest.commands)
        if before is not None:
            result["info"] = before
        if e.kind:
            result.update(error_kind=e.kind, remedy=e.remedy)
            result["msg"] += "\nRemedy: " + e.remedy
        module.fail_json(**result)
    if changed is None:
        changed = diff_view(before)["db"] != diff_view(after)["db"]
    result = dict(changed=changed, commands=backrest.commands, info=after)
    if module._diff:
        predicted = diff_view(after)
        if module.check_mode and changed:
            predicted["exists"] = p["state"] != "absent"
        result["diff"] = dict(before=diff_view(before), after=predicted)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
