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
    a I(remedy) - a system identifier mismatch after a re-initdb, archive_command not
    calling pgBackRest, archive_mode off, a WAL segment not archived in time, an
    unreachable repository or PostgreSQL.
  - The commands run as I(os_user) (C(runuser) when the module runs as root), so files in
    the repository keep the owner pgBackRest expects.
extends_documentation_fragment:
  - pgfleet.core.pgbackrest
options:
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
      - To read the status only, use M(pgfleet.core.pgbackrest_info).
    type: str
    choices: [present, upgraded, checked, absent]
    default: present
  force:
    description: Required with C(state=absent), which deletes every backup of the stanza.
    type: bool
    default: false
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
  description: Summary of C(pgbackrest info) after the run, as M(pgfleet.core.pgbackrest_info) returns it.
  returned: always
  type: dict
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

from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import (
    PgBackRest, PgBackRestError, backrest_argument_spec, summarize_info,
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
            self.backrest.commands.append(self.backrest.describe(self.backrest.base + [self.flag] + list(args)))
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backrest_argument_spec(),
            state=dict(type="str", default="present", choices=["present", "upgraded", "checked", "absent"]),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    backrest = PgBackRest.for_module(module)
    stanza = Stanza(module, backrest)
    action = dict(present=stanza.present, upgraded=stanza.upgraded, checked=stanza.checked,
                  absent=stanza.absent)[p["state"]]
    before = None
    try:
        before = stanza.info()
        changed = action(before)
        after = before if module.check_mode or not backrest.commands else stanza.info()
    except PgBackRestError as e:
        result = e.result("pgbackrest %s failed for stanza %r" % (p["state"], p["stanza"]))
        if before is not None:
            result["info"] = before
        module.fail_json(commands=backrest.commands, **result)
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
