# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest from modules: its command line, its JSON info and its error codes.

Pure functions (summarize_info, explain_error, option_args) are unit-tested; PgBackRest
runs the real binary as the repository's owner and records every command line it runs.
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure
from ansible_collections.pgfleet.core.plugins.module_utils.os_user import OsUser

# A stanza name is a directory name in the repository and a section of the config file.
STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
OPTION_RE = re.compile(r"^[a-z][a-z0-9-]*$")
ERROR_RE = re.compile(r"ERROR: \[(\d{3})\]: ")

BACKUP_TYPES = ("full", "diff", "incr")

# pgBackRest's error codes (src/build/error/error.yaml) grouped by what the operator does next.
SYSID_MISMATCH = (28, 44, 51, 58)
REPO_UNREACHABLE = (39, 41, 49, 53, 73, 101, 103, 105)
# checksum, format, file-missing, backup-set-invalid, json-format: the repository answers, but
# what it holds is missing or unreadable (a missing info file is [055], not a network problem).
REPO_CORRUPT = (26, 29, 55, 75, 99)
# The error class names pgBackRest prints inside `info`'s status message, by code.
ERROR_NAMES = {"ChecksumError": 26, "FileInvalidError": 28, "FormatError": 29, "FileOpenError": 41,
               "FileReadError": 42, "FileMissingError": 55, "BackupSetInvalidError": 75, "CryptoError": 95,
               "JsonFormatError": 99}
REMEDIES = {
    "system_identifier_mismatch": (
        "the repository holds this stanza for another PostgreSQL system (different system "
        "identifier or version): the cluster was re-initialised or restored from elsewhere, or "
        "pg1-path/--stanza name the wrong cluster. If the new cluster is the one to back up from "
        "now on, run state=upgraded (pgbackrest stanza-upgrade) and take a new full backup; "
        "otherwise fix pg1-path or the stanza name."),
    "archive_command_not_pgbackrest": (
        "archive_command must call pgBackRest: set archive_command = "
        "'pgbackrest --stanza=<stanza> archive-push %p' and reload PostgreSQL."),
    "archive_disabled": (
        "set archive_mode = on (needs a restart) and archive_command = "
        "'pgbackrest --stanza=<stanza> archive-push %p'."),
    "archive_timeout": (
        "PostgreSQL did not archive a WAL segment in time: see pg_stat_archiver.last_failed_wal "
        "and the server log for archive_command errors; check that archive_command names this "
        "stanza and config, and that 'pgbackrest start' was run if the stanza was stopped. "
        "A slow repository may need a larger archive-timeout."),
    "repo_unreachable": (
        "the repository cannot be reached or read: check repo1-path (posix) or the S3 "
        "endpoint, bucket, region and credentials, the network to a repository host, and that "
        "the stanza was created (state=present)."),
    "postgres_unreachable": (
        "pgBackRest cannot connect to PostgreSQL: check pg1-path, pg1-port, pg1-socket-path "
        "(or pg1-host) and that the server is running."),
    "repo_corrupt": (
        "the repository is reachable but the stanza's metadata in it is missing or unreadable "
        "(archive.info / backup.info and their .copy files). Do not write into it: stop backups, keep "
        "the damaged repository for forensics, and run 'pgbackrest --stanza=<stanza> verify' to see which "
        "backups and WAL are still sound. An info file whose .copy survives is restored by stanza-create "
        "(state=present, reported as a change); when both copies are gone or damaged, restore them from "
        "a file-system or bucket backup of the repository, or point the stanza at a fresh repository "
        "(new repo path or bucket prefix), run state=present and take a new full backup at once."),
    "repo_cipher": (
        "the repository cannot be decrypted: repo1-cipher-pass (or repo1-cipher-type) in the "
        "configuration does not match the one the repository was created with."),
    "stanza_stopped": "the stanza was stopped with 'pgbackrest stop': run 'pgbackrest start'.",
    "lock_held": "another pgBackRest command (a backup or expire) holds the stanza's lock; retry later.",
}


KIND_BY_CODE = {68: "archive_command_not_pgbackrest", 87: "archive_disabled", 82: "archive_timeout",
                56: "postgres_unreachable", 62: "stanza_stopped", 50: "lock_held"}


def classify_error(code, message):
    if "do not match the database" in message or (code in SYSID_MISMATCH and code != 28):
        return "system_identifier_mismatch"
    if code in REPO_CORRUPT or code == 28:  # file-invalid: an info file that does not parse as one
        return "repo_corrupt"
    if code == 95:
        return "repo_cipher"
    if code in REPO_UNREACHABLE:
        return "repo_unreachable"
    return KIND_BY_CODE.get(code)


def status_error_code(message):
    """The pgBackRest error code of an `info` status message such as '[FormatError] unable to load ...'."""
    match = re.match(r"^\[(\w+)\]", message or "")
    return ERROR_NAMES.get(match.group(1)) if match else None


def explain_error(stderr):
    """(code, kind, message, remedy) for pgBackRest's ERROR line in STDERR; code None if absent."""
    match = ERROR_RE.search(stderr or "")
    if not match:
        return None, None, (stderr or "").strip(), None
    code = int(match.group(1))
    message = stderr[match.start():].strip()
    kind = classify_error(code, message)
    return code, kind, message, REMEDIES.get(kind)


def option_env(options):
    """PGBACKREST_<NAME>=value for each extra option; bad names raise ValueError.

    Environment variables, unlike command-line options, are ignored by the commands
    that do not take them (archive-timeout means nothing to `info`), as the
    configuration file's are.
    """
    env = {}
    for key, value in options.items():
        if not OPTION_RE.match(key):
            raise ValueError("options: %r is not a pgBackRest option name" % key)
        if isinstance(value, bool):
            value = "y" if value else "n"
        elif not isinstance(value, (str, int, float)):
            raise ValueError("options: %s must be a string, number or boolean, not %r" % (key, value))
        env["PGBACKREST_" + key.upper().replace("-", "_")] = str(value)
    return env


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch is not None else None


def _backup(raw, now):
    stamp = raw.get("timestamp") or {}
    info = raw.get("info") or {}
    stop = stamp.get("stop")
    return dict(
        label=raw.get("label"),
        type=raw.get("type"),
        start=_iso(stamp.get("start")),
        stop=_iso(stop),
        stop_epoch=stop,
        age_seconds=(int(now - stop) if stop is not None else None),
        size=info.get("size"),
        delta=info.get("delta"),
        repo_size=(info.get("repository") or {}).get("size"),
        error=bool(raw.get("error", False)),
        wal_start=(raw.get("archive") or {}).get("start"),
        wal_stop=(raw.get("archive") or {}).get("stop"),
    )


def _wal_range(archives):
    mins = [a["min"] for a in archives if a.get("min")]
    maxs = [a["max"] for a in archives if a.get("max")]
    return dict(min=min(mins) if mins else None, max=max(maxs) if maxs else None)


def summarize_info(raw, now=None):
    """The parts of one stanza of `pgbackrest info --output=json` that operators act on.

    A WAL segment name sorts by timeline, then position, so min/max are plain string
    comparisons. Per repository: the newest backup of each type (a diff or incr is
    newest by stop time, whatever its full), and that repository's WAL range.
    """
    now = time.time() if now is None else now
    backups = raw.get("backup") or []
    repos = []
    for repo in raw.get("repo") or []:
        key = repo.get("key")
        mine = [b for b in backups if (b.get("database") or {}).get("repo-key") == key]
        last = {}
        for kind in BACKUP_TYPES:
            of_kind = [b for b in mine if b.get("type") == kind]
            newest = max(of_kind, key=lambda b: (b.get("timestamp") or {}).get("stop") or 0, default=None)
            last[kind] = _backup(newest, now) if newest else None
        repos.append(dict(
            key=key,
            cipher=repo.get("cipher"),
            status=dict(code=(repo.get("status") or {}).get("code"),
                        message=(repo.get("status") or {}).get("message")),
            backup_count=len(mine),
            last_backup=last,
            archive=_wal_range([a for a in raw.get("archive") or []
                                if (a.get("database") or {}).get("repo-key") == key]),
        ))
    status = raw.get("status") or {}
    return dict(
        stanza=raw.get("name"),
        status=dict(code=status.get("code"), message=status.get("message")),
        exists=status.get("code") not in (1, 3),
        backup_running=bool(((status.get("lock") or {}).get("backup") or {}).get("held")),
        cipher=raw.get("cipher"),
        db=[dict(id=d.get("id"), repo_key=d.get("repo-key"), system_id=str(d.get("system-id")),
                 version=d.get("version")) for d in raw.get("db") or []],
        repos=repos,
        archive=_wal_range(raw.get("archive") or []),
    )


def backrest_argument_spec():
    """Options of every pgBackRest module; mirrored by the pgfleet.core.pgbackrest doc fragment."""
    return dict(
        stanza=dict(type="str", required=True),
        config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
        options=dict(type="dict", default={}),
        os_user=dict(type="str", default="postgres"),
        executable=dict(type="str", default="pgbackrest"),
    )


def stanza_error(option, value):
    """Why VALUE cannot be the stanza name given as OPTION, or None."""
    if STANZA_RE.match(value):
        return None
    return ("%s: %r is not a valid stanza name (letters, digits, '.', '_', '-'; starting with a letter or "
            "digit; at most 64 characters)" % (option, value))


class PgBackRestError(ModuleFailure):
    """A pgBackRest error, explained; modules re-raise it with what they were doing (result)."""

    def __init__(self, argv, rc, stderr):
        self.argv, self.rc = argv, rc
        self.code, self.kind, self.message, self.remedy = explain_error(stderr)
        super().__init__(self.message, rc=rc, error_code=self.code)

    @classmethod
    def found(cls, code, message):
        """An error the module found itself, read-only, before running the command that would hit it."""
        return cls(None, None, "ERROR: [%03d]: %s" % (code, message))

    def result(self, what):
        """ModuleFailure arguments: WHAT failed, pgBackRest's message, and the remedy when known."""
        out = dict(msg="%s: %s" % (what, self.message), rc=self.rc, error_code=self.code)
        if self.kind:
            out.update(error_kind=self.kind, remedy=self.remedy, msg=out["msg"] + "\nRemedy: " + self.remedy)
        return out


class PgBackRest:
    """Runs `pgbackrest` as OS_USER (an os_user.OsUser) through RUN_COMMAND (AnsibleModule's)."""

    def __init__(self, run_command, os_user, executable="pgbackrest", config=None, options=None):
        self.run_command = run_command
        self.os_user = os_user
        self.base = [executable] + (["--config=%s" % config] if config else [])
        self.env = option_env(options or {})
        self.commands = []

    @classmethod
    def for_module(cls, module):
        """From backrest_argument_spec() options; a bad value raises ModuleFailure naming it."""
        p = module.params
        why = stanza_error("stanza", p["stanza"])
        if why:
            raise ModuleFailure(why)
        try:
            return cls(module.run_command, OsUser(p["os_user"]), p["executable"], p["config"], p["options"])
        except ValueError as e:
            raise ModuleFailure(str(e)) from None

    def describe(self, argv):
        """The command line as an operator would type it, options from the environment first."""
        return " ".join(["%s=%s" % kv for kv in sorted(self.env.items())] + list(argv))

    def repo_ls(self, stanza, repo_key, path):
        """Names in PATH of repository REPO_KEY (read-only; an absent path lists nothing)."""
        out = self.run("--stanza=%s" % stanza, "--repo=%d" % repo_key, "--output=json", "repo-ls", path,
                       record=False)
        try:
            return sorted(name for name in json.loads(out) if name != ".")
        except ValueError:
            raise PgBackRestError.found(99, "pgbackrest repo-ls printed no JSON: %s" % out[:200])

    def run(self, *args, record=True):
        argv = self.base + list(args)
        if record:
            self.commands.append(self.describe(argv))
        rc, out, err = self.run_command(self.os_user.argv(argv), environ_update=self.env)
        if rc != 0:
            raise PgBackRestError(argv, rc, err or out)
        return out

    def info(self, stanza):
        out = self.run("--stanza=%s" % stanza, "--output=json", "info", record=False)
        try:
            stanzas = json.loads(out)
        except ValueError:
            raise PgBackRestError(self.base, 0, "ERROR: [099]: pgbackrest info printed no JSON: %s" % out[:200])
        found = [s for s in stanzas if s.get("name") == stanza]
        return found[0] if found else {"name": stanza, "status": {"code": 1, "message": "missing stanza path"}}
