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
    unreachable repository or PostgreSQL, a damaged repository (C(repo_corrupt), an info
    file missing or unreadable, a checksum or format error), a wrong cipher passphrase.
  - Before C(present), C(upgraded) or (in check mode) C(checked) runs, the repository is
    read as pgBackRest's own stanza-create reads it (C(pgbackrest info), C(repo-ls) of the
    stanza's archive and backup directories); an info file missing with its C(.copy) or
    unreadable fails as C(repo_corrupt) before anything is written; one whose C(.copy)
    survives is restored by stanza-create, reported as a change with a warning.
  - C(present) refuses a cluster that cannot archive into the stanza (archive_mode off or
    waiting for a restart, archive_library set, an archive_command that does not call
    pgBackRest or names another stanza), read from the local cluster before any change.
    When the cluster is on another host (C(pg1-host)) that check is C(pgbackrest check)
    after the stanza exists. I(archive_check=false) turns both off.
  - The commands run as I(os_user) (C(runuser) when the module runs as root), so files in
    the repository keep the owner pgBackRest expects.
extends_documentation_fragment:
  - pgfleet.core.pgbackrest
  - pgfleet.core.attributes
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
  archive_check:
    description:
      - With C(state=present), refuse a cluster that cannot archive WAL into this stanza
        (see above). Turn it off only when another task checks archiving right after, e.g.
        C(state=checked), or while archiving is being set up on purpose in a later step.
    type: bool
    default: true
notes:
  - Check mode runs only read-only commands (C(info), C(repo-ls), a query of the local
    cluster's settings) and predicts the same refusals as a real run. A stanza whose database
    no longer matches is predicted when the cluster is local (I(pg1-path) on this host,
    no I(pg1-host)).
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

try:
    import psycopg2
except ImportError:  # the archive check then falls back to `pgbackrest check`
    psycopg2 = None

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure, run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import (
    PgBackRest, PgBackRestError, backrest_argument_spec, status_error_code, summarize_info,
)

# What stanza-create keeps in each directory of a repository: a file and its copy.
INFO_FILES = (("archive", ("archive.info", "archive.info.copy")), ("backup", ("backup.info", "backup.info.copy")))

SETTINGS_SQL = """
SELECT current_setting('archive_mode'), current_setting('archive_command'),
       coalesce(current_setting('archive_library', true), ''),
       (SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode')
"""


def config_values(module, stanza):
    """The stanza's options as pgBackRest reads them: [global], then [STANZA], then I(options)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(module.params["config"])
    values = {}
    for section in ("global", stanza):
        if parser.has_section(section):
            values.update(parser.items(section))
    values.update((key, str(value)) for key, value in module.params["options"].items())
    return values


def local_cluster(module, values):
    """(system identifier, major version) of the stanza's pg1-path (from VALUES, its options)
    when it is on this host."""
    path = values.get("pg1-path")
    try:
        with open(os.path.join(path, "PG_VERSION")) as f:
            version = f.read().strip()
    except (OSError, TypeError):
        return None
    if values.get("pg1-host"):
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
        self.values = config_values(module, self.stanza)

    # ---- read-only checks, the same in check mode and in a real run ----------------------
    def repo_keys(self):
        keys = {int(m.group(1)) for m in (re.match(r"^repo(\d+)-", k) for k in self.values) if m}
        return sorted(keys) or [1]

    def inspect_repository(self, before):
        """What stanza-create would find in each repository; raise what it would fail with.

        Returns the info files it would restore from their copies (a repair is a change)."""
        repairs = []
        for key in self.repo_keys():
            present = {}
            for side, files in INFO_FILES:
                names = self.backrest.repo_ls(self.stanza, key, "%s/%s" % (side, self.stanza))
                present[side] = [f for f in files if f in names]
            if present["archive"] and present["backup"]:
                repairs += ["%s on repo%d" % (f, key) for side, files in INFO_FILES
                            for f in files if f not in present[side]]
            elif present["archive"] or present["backup"]:
                have, lost = ("archive", "backup") if present["archive"] else ("backup", "archive")
                raise PgBackRestError.found(55, "%s.info exists but %s.info and %s.info.copy are missing on repo%d "
                                                "(this may be a symptom of repository corruption)" % (have, lost, lost, key))
        for repo in before["repos"]:
            code = status_error_code(repo["status"]["message"]) if repo["status"]["code"] == 99 else None
            if code:
                raise PgBackRestError.found(code, "repo%s: %s" % (repo["key"], repo["status"]["message"]))
        return repairs

    def check_archiving(self):
        """Refuse a local cluster that cannot archive into this stanza. False when the
        cluster is not local and `pgbackrest check` must decide after the change."""
        if not self.module.params["archive_check"]:
            return True
        if self.values.get("pg1-host") or psycopg2 is None:
            return False
        os_user = self.backrest.os_user
        socket = self.values.get("pg1-socket-path", "/var/run/postgresql")
        port = int(self.values.get("pg1-port", 5432))
        try:
            with os_user.identity():
                conn = psycopg2.connect(host=socket, port=port, dbname=self.values.get("pg1-database", "postgres"),
                                        user=self.values.get("pg1-user", os_user.name), client_encoding="UTF8",
                                        application_name="pgfleet.core.pgbackrest_stanza", connect_timeout=10)
            try:
                with conn.cursor() as cur:
                    cur.execute(SETTINGS_SQL)
                    mode, command, library, pending = cur.fetchone()
            finally:
                conn.close()
        except psycopg2.Error as e:
            raise PgBackRestError.found(56, "cannot read the archive settings of the cluster on %s port %d: %s"
                                        % (socket, port, str(e).strip()))
        if mode == "off":
            raise PgBackRestError.found(87, "archive_mode is off%s: this cluster would not archive WAL into stanza %r, "
                                        "and its backups could not be restored" % (
                                            " (on in the configuration, waiting for a restart)" if pending else "",
                                            self.stanza))
        if library:
            raise PgBackRestError.found(68, "archive_library is %r: PostgreSQL ignores archive_command, which must "
                                        "call pgbackrest" % library)
        if "pgbackrest" not in command:
            raise PgBackRestError.found(68, "archive_command %r must contain pgbackrest" % command)
        named = re.search(r"--stanza[= ]['\"]?([A-Za-z0-9_.-]+)", command)
        if named and named.group(1) != self.stanza:
            raise PgBackRestError.found(68, "archive_command %r archives into stanza %r, not %r"
                                        % (command, named.group(1), self.stanza))
        return True

    def predict_match(self, before):
        """Check mode: stanza-create on an existing stanza fails when the cluster is another system."""
        if not before["exists"] or not before["db"]:
            return
        local = local_cluster(self.module, self.values)
        if local is None:
            if not self.values.get("pg1-host"):  # with pg1-host the cluster is elsewhere, as expected
                self.module.warn("check mode cannot compare the cluster with the stanza: pg1-path %r is not a "
                                 "local data directory" % self.values.get("pg1-path"))
            return
        current = before["db"][-1]
        if (current.get("system_id"), current.get("version")) != local:
            raise PgBackRestError.found(28, "backup and archive info files exist but do not match the database "
                                            "(stanza: system id %s, version %s; cluster: system id %s, version %s)"
                                        % (current.get("system_id"), current.get("version"), local[0], local[1]))

    def info(self):
        return summarize_info(self.backrest.info(self.stanza))

    def command(self, *args):
        """Run a pgBackRest command unless in check mode (it is listed either way)."""
        if self.module.check_mode:
            self.backrest.commands.append(self.backrest.describe(self.backrest.base + [self.flag] + list(args)))
            return
        self.backrest.run(self.flag, *args)

    def present(self, before):
        repairs = self.inspect_repository(before)
        archive_checked = self.check_archiving()
        if self.module.check_mode:
            self.predict_match(before)
        # stanza-create is idempotent: on an existing stanza it verifies the repository
        # against the cluster and fails with [028] when they no longer match.
        self.command("stanza-create")
        if repairs:
            self.module.warn("stanza-create %s %s from %s: the repository lost files it should never lose; "
                             "run 'pgbackrest --stanza=%s verify' and find out why"
                             % ("would restore" if self.module.check_mode else "restored", ", ".join(repairs),
                                "their copies", self.stanza))
        if not archive_checked:
            if self.module.check_mode:
                self.module.warn("check mode cannot tell whether the cluster (pg1-host) archives into stanza %r; "
                                 "a real run checks it with 'pgbackrest check'" % self.stanza)
            else:
                self.backrest.run(self.flag, "check")
        return not before["exists"] or bool(repairs)

    def upgraded(self, before):
        if not before["exists"]:
            raise ModuleFailure("stanza %r does not exist in the repository; create it with state=present"
                                % self.stanza, commands=self.backrest.commands, info=before)
        self.inspect_repository(before)
        self.command("stanza-upgrade")
        if self.module.check_mode:
            return self.upgrade_needed(before)
        return None  # decided by comparing the database list before and after

    def upgrade_needed(self, before):
        """Check mode: compare the local cluster (pg1-path) with the stanza's current database."""
        local = local_cluster(self.module, self.values)
        if local is None:
            self.module.warn("check mode cannot predict stanza-upgrade: pg1-path is not a local data directory")
            return False
        current = before["db"][-1] if before["db"] else {}
        return (current.get("system_id"), current.get("version")) != local

    def checked(self, before):
        if self.module.check_mode:
            # `check` writes (it switches and archives a WAL segment): predict with what reads.
            if not before["exists"]:
                raise PgBackRestError.found(55, "stanza %r does not exist in the repository (state=present creates it)"
                                            % self.stanza)
            self.inspect_repository(before)
            self.check_archiving()
            self.predict_match(before)
        else:
            self.backrest.run(self.flag, "check")
        return False

    def absent(self, before):
        if not self.module.params["force"]:
            raise ModuleFailure(
                "refusing to delete stanza %r and every backup in it without force=true; nothing was changed"
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
            archive_check=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    state = {}
    run_guarded(module, lambda: apply(module, state),
                lambda: dict(commands=state["backrest"].commands) if "backrest" in state else {})


def apply(module, state):
    p = module.params
    backrest = state["backrest"] = PgBackRest.for_module(module)
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
        raise ModuleFailure(commands=backrest.commands, **result) from None
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
