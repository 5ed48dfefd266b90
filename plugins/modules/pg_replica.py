#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_replica
short_description: A PostgreSQL data directory as a streaming standby of a named primary
version_added: 0.1.0
description:
  - Run on the replica's host. Makes I(data_dir) a hot standby streaming from
    I(primary_host) (or from I(upstream_host), a replica of it, for cascading), cloned with
    C(pg_basebackup) or restored from a pgBackRest repository, and reports its replication
    state.
  - Everything is checked before anything changes, over a replication connection as
    I(replication_user) (no superuser needed on the primary) - the source answers, the
    password works, the slot exists or may be created, the system identifiers agree.
  - A standby already streaming from the source with the wanted settings is no change.
    A running standby whose settings differ (another primary after a failover, another
    slot or sslmode) is re-pointed with C(ALTER SYSTEM) and a reload, without a new copy.
  - A data directory is never replaced unless I(rebuild=true) - when it belongs to a
    running primary (for instance the old primary after a failover), to a stopped cluster
    that is not a standby, to another system identifier, or holds files that are not a
    PostgreSQL data directory. The refusal says which.
  - The replication password goes only into I(passfile) (mode 0600, owned by I(os_user));
    C(primary_conninfo) names that file, so the password is in no configuration file,
    command line or environment.
  - C(state=promoted) promotes the standby with C(pg_promote) and waits for it.
extends_documentation_fragment:
  - pgfleet.core.attributes
options:
  state:
    description: C(present) for a streaming standby; C(promoted) to promote it to a primary.
    type: str
    choices: [present, promoted]
    default: present
  data_dir:
    description: The standby's data directory (created 0700 for I(os_user) when missing).
    type: path
    required: true
  primary_host:
    description: Host (name, address or socket directory) of the primary. Required with C(state=present).
    type: str
  primary_port:
    description: Port of the primary.
    type: int
    default: 5432
  upstream_host:
    description:
      - For a cascading replica, a standby of I(primary_host) to clone from and stream
        from; its system identifier must be the primary's.
    type: str
  upstream_port:
    description: Port of I(upstream_host).
    type: int
    default: 5432
  replication_user:
    description: Role with the REPLICATION attribute on the source.
    type: str
    default: replicator
  replication_password:
    description:
      - Its password; written to I(passfile), never logged. Leave unset when I(passfile)
        already holds it or authentication needs none.
    type: str
  passfile:
    description: libpq password file for the replication connection. Default C(~os_user/.pgpass).
    type: path
  slot:
    description: Physical replication slot on the source (lower-case letters, digits, C(_)).
    type: str
  create_slot:
    description: Create I(slot) on the source when missing; with C(false) a missing slot is an error.
    type: bool
    default: true
  method:
    description:
      - How to copy the source. C(basebackup) streams a copy with C(pg_basebackup).
        C(pgbackrest) restores the latest backup from the repository
        (C(restore --type=standby), with C(--delta) over an existing directory) and
        catches up from the WAL archive, then streams.
    type: str
    choices: [basebackup, pgbackrest]
    default: basebackup
  pgbackrest_stanza:
    description: Stanza to restore from with C(method=pgbackrest).
    type: str
  pgbackrest_config:
    description: pgBackRest configuration file on this host.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  ssl_mode:
    description: libpq sslmode of the replication connection; C(verify-full) with I(ssl_rootcert) across networks.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description: CA certificate file for C(verify-ca) and C(verify-full).
    type: path
  application_name:
    description: Name the standby reports to its source (C(pg_stat_replication)). Default the host's short name.
    type: str
  rebuild:
    description:
      - Allow replacing a data directory that is not a standby of the source (see above).
        A standby that already matches is still left alone.
    type: bool
    default: false
  os_user:
    description: OS user that owns the data directory and runs PostgreSQL.
    type: str
    default: postgres
  bin_dir:
    description: PostgreSQL binaries. Default C(/usr/lib/postgresql/<major>/bin) for the source's major version.
    type: path
  service:
    description:
      - systemd unit that runs this cluster (Debian - C(postgresql@<version>-main), 17 on Debian 13); it is
        stopped and started with systemctl. Without it the module uses C(pg_ctl) on
        I(data_dir).
    type: str
  config_dir:
    description:
      - Directory of C(postgresql.conf) when it is not in I(data_dir) (Debian keeps it in
        C(/etc/postgresql/<major>/<name>)); C(pg_ctl start) is pointed at it. Without I(service) only.
    type: path
  log_file:
    description: Server log file for C(pg_ctl start) (without I(service)). Default C(<data_dir>/startup.log).
    type: path
  port:
    description: Port of the local cluster.
    type: int
    default: 5432
  unix_socket:
    description: Socket directory of the local cluster (connected to as I(os_user), peer authentication).
    type: path
    default: /var/run/postgresql
  wait_timeout:
    description: Seconds to wait for the copy to start streaming, or for a promotion.
    type: int
    default: 300
  connect_timeout:
    description: Seconds to wait for a connection to the source.
    type: int
    default: 10
notes:
  - Run as root (C(become=true)) or as I(os_user); the PostgreSQL tools always run as I(os_user).
  - Check mode connects to the source and the local cluster read-only and reports what
    would be done (I(action)); it creates no slot and copies nothing.
requirements:
  - psycopg2 on the replica's host (Debian package python3-psycopg2)
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Stream from the primary over TLS, through a slot of its own
  pgfleet.core.pg_replica:
    data_dir: "{{ pg_data_dir }}"
    service: "{{ pg_service }}"
    primary_host: pg1.internal
    replication_password: "{{ vault_pg_replication_password }}"
    slot: pg2
    ssl_mode: verify-full
    ssl_rootcert: /etc/postgresql/ssl/ca.crt
  become: true

- name: A cross-region replica restored from the backup repository
  pgfleet.core.pg_replica:
    data_dir: "{{ pg_data_dir }}"
    service: "{{ pg_service }}"
    primary_host: pg1.internal
    method: pgbackrest
    pgbackrest_stanza: main
    slot: pg3
  become: true

- name: Promote it
  pgfleet.core.pg_replica:
    data_dir: "{{ pg_data_dir }}"
    state: promoted
  become: true
"""

RETURN = r"""
action:
  description: What was done (or would be, in check mode) - none, configured (settings
    changed on a running standby), started, cloned, rebuilt, promoted.
  returned: always
  type: str
  sample: cloned
commands:
  description: Programs run (or that would be run), as run; no password appears in them.
  returned: always
  type: list
  elements: str
queries:
  description: Statements and replication commands sent (slot creation, ALTER SYSTEM, pg_promote).
  returned: always
  type: list
  elements: str
passfile_updated:
  description: Whether the password file was (or would be) rewritten.
  returned: always
  type: bool
system_identifier:
  description: System identifier of the cluster.
  returned: always
  type: str
replication:
  description: Replication state after the run (from pg_stat_wal_receiver and the source's WAL position).
  returned: success
  type: dict
  contains:
    in_recovery: {description: Whether the cluster is a standby., type: bool, returned: always}
    streaming: {description: Whether the WAL receiver is streaming., type: bool, returned: always}
    status: {description: WAL receiver status., type: str, returned: always}
    sender_host: {description: Host it streams from., type: str, returned: always}
    sender_port: {description: Port it streams from., type: int, returned: always}
    slot_name: {description: Slot it streams through., type: str, returned: always}
    timeline: {description: Current timeline., type: int, returned: always}
    replay_lsn: {description: Last replayed WAL position., type: str, returned: always}
    replay_lag_bytes: {description: Bytes between the primary's WAL position and replay., type: int, returned: always}
    replay_lag_seconds: {description: Seconds behind the primary (0 when all received WAL is replayed)., type: float, returned: always}
  sample: {in_recovery: true, streaming: true, status: streaming, sender_host: pg1.internal, sender_port: 5432,
           slot_name: pg2, timeline: 1, replay_lsn: 0/3000148, replay_lag_bytes: 0, replay_lag_seconds: 0.0}
"""

import os
import re
import shutil
import socket
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure, run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.os_user import OsUser
from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import stanza_error
from ansible_collections.pgfleet.core.plugins.module_utils.postgres import check_identifiers
from ansible_collections.pgfleet.core.plugins.module_utils.replica import (
    APP_NAME_RE, SLOT_RE, auto_conf_without, conf_quote, conninfo_differs, desired_conninfo, int_to_lsn, lsn_to_int,
    pgpass_update,
)

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2.extensions import make_dsn, parse_dsn
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

STANDBY_KEYS = ("primary_conninfo", "primary_slot_name")
# A source restored to a point in time keeps pgBackRest's recovery target in its
# postgresql.auto.conf, and pg_basebackup copies that file: a standby that kept it would
# stop at the target's first later commit, promote itself and archive a timeline of its own.
RECOVERY_TARGET_KEYS = ("recovery_target", "recovery_target_name", "recovery_target_time", "recovery_target_xid",
                        "recovery_target_lsn", "recovery_target_inclusive", "recovery_target_timeline",
                        "recovery_target_action")

LOCAL_SQL = """
SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), current_setting('primary_slot_name'),
       r.status, r.sender_host, r.sender_port, r.slot_name,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,
       CASE WHEN pg_is_in_recovery() THEN COALESCE(r.received_tli, 0)
            ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END,
       CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8
FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver r ON true
"""


class Replica:
    def __init__(self, module, os_user):
        self.module = module
        self.p = module.params
        self.os_user = os_user
        self.commands = []
        self.queries = []
        self.data_dir = self.p["data_dir"]

    # --- helpers -------------------------------------------------------------------
    def fail(self, msg, **kw):
        raise ModuleFailure(msg, commands=self.commands, queries=self.queries, **kw)

    def run(self, argv, env=None, record=True, check_rc=True, as_owner=True):
        """Run ARGV as the data directory's owner (or as this module's user: systemctl)."""
        if record:
            self.commands.append(" ".join(argv))
        rc, out, err = self.module.run_command(self.os_user.argv(argv) if as_owner else argv,
                                               environ_update=dict(env or {}, LC_ALL="C"))
        if check_rc and rc != 0:
            self.fail("%s failed (rc %d): %s" % (os.path.basename(argv[0]), rc, (err or out).strip()))
        return rc, out

    def source(self):
        if self.p["upstream_host"]:
            return self.p["upstream_host"], self.p["upstream_port"]
        return self.p["primary_host"], self.p["primary_port"]

    def replication_connection(self, host, port):
        kw = dict(host=host, port=port, user=self.p["replication_user"], sslmode=self.p["ssl_mode"],
                  connect_timeout=self.p["connect_timeout"], application_name="pgfleet.core.pg_replica",
                  client_encoding="UTF8", connection_factory=psycopg2.extras.PhysicalReplicationConnection)
        if self.p["replication_password"]:
            kw["password"] = self.p["replication_password"]
        elif self.passfile() and os.path.exists(self.passfile()):
            kw["passfile"] = self.passfile()
        if self.p["ssl_rootcert"]:
            kw["sslrootcert"] = self.p["ssl_rootcert"]
        try:
            with self.os_user.identity():
                return psycopg2.connect(**kw)
        except psycopg2.Error as e:
            # libpq's message names the host and the reason, never the password.
            raise ModuleFailure("cannot open a replication connection to %s:%s as %r: %s"
                                % (host, port, self.p["replication_user"], str(e).strip()))

    def passfile(self):
        return self.p["passfile"] or os.path.join(self.os_user.home, ".pgpass")

    def local_connection(self):
        try:
            with self.os_user.identity():
                conn = psycopg2.connect(host=self.p["unix_socket"], port=self.p["port"], dbname="postgres",
                                        user=self.os_user.name, application_name="pgfleet.core.pg_replica",
                                        client_encoding="UTF8")
        except psycopg2.Error as e:
            self.fail("cannot connect to the local cluster on %s port %s as %r: %s"
                      % (self.p["unix_socket"], self.p["port"], self.os_user.name, str(e).strip()))
        conn.autocommit = True
        return conn

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    # --- what is there ---------------------------------------------------------------
    def inspect_source(self):
        """System identifier, major version and slot state of the source; checks the primary."""
        host, port = self.source()
        conn = self.replication_connection(host, port)
        try:
            cur = conn.cursor()
            cur.execute("IDENTIFY_SYSTEM")
            sysid, source_tli = cur.fetchone()[:2]
            cur.execute("SHOW server_version_num")
            major = str(int(cur.fetchone()[0]) // 10000)
            cur.execute("SHOW in_hot_standby")
            source_is_standby = cur.fetchone()[0] == "on"
            slot_exists = None
            if self.p["slot"]:
                cur.execute("READ_REPLICATION_SLOT %s" % self.p["slot"])  # name checked by SLOT_RE
                slot_type = cur.fetchone()[0]
                if slot_type not in (None, "physical"):
                    raise ModuleFailure("slot %r on %s:%s is a %s slot, not a physical one" % (self.p["slot"], host, port, slot_type))
                slot_exists = slot_type == "physical"
        finally:
            conn.close()
        if self.p["upstream_host"]:
            primary = self.primary_identity()
            if primary != sysid:
                raise ModuleFailure("upstream %s:%s has system identifier %s but primary %s:%s has %s: it is not a replica of it"
                                    % (host, port, sysid, self.p["primary_host"], self.p["primary_port"], primary))
        elif source_is_standby:
            raise ModuleFailure("primary_host %s:%s is a standby, not a primary; name the primary, or set upstream_host "
                                "for a cascading replica" % (host, port))
        if self.p["slot"] and not slot_exists and not self.p["create_slot"]:
            raise ModuleFailure("slot %r does not exist on %s:%s and create_slot is false; nothing was changed"
                                % (self.p["slot"], host, port))
        return dict(system_identifier=sysid, major=major, slot_exists=slot_exists, timeline=int(source_tli))

    def replication_command(self, host, port, command):
        """The first row COMMAND returns over a new replication connection (None if no rows)."""
        conn = self.replication_connection(host, port)
        try:
            cur = conn.cursor()
            cur.execute(command)
            return cur.fetchone() if cur.description else None
        finally:
            conn.close()

    def primary_identity(self):
        return self.replication_command(self.p["primary_host"], self.p["primary_port"], "IDENTIFY_SYSTEM")[0]

    def primary_wal_position(self):
        return lsn_to_int(self.replication_command(self.p["primary_host"], self.p["primary_port"], "IDENTIFY_SYSTEM")[2])

    def inspect_local(self):
        d = self.data_dir
        if not os.path.isdir(d) or not os.listdir(d):
            return dict(kind="empty")
        if not os.path.exists(os.path.join(d, "PG_VERSION")):
            return dict(kind="foreign", entries=sorted(os.listdir(d))[:5])
        with open(os.path.join(d, "PG_VERSION")) as f:
            major = f.read().strip()
        bin_dir = self.p["bin_dir"] or "/usr/lib/postgresql/%s/bin" % major
        out = self.run([os.path.join(bin_dir, "pg_controldata"), d], record=False)[1]
        fields = dict(re.findall(r"^([^:\n]+):\s+(.*)$", out, re.M))
        rc = self.run([os.path.join(bin_dir, "pg_ctl"), "status", "-D", d], record=False, check_rc=False)[0]
        # A standby's WAL position and timeline, running or not: the later of its last
        # restartpoint and its minimum recovery point.
        points = [(int(fields.get(tli) or 0), lsn_to_int(fields.get(loc)) or 0)
                  for tli, loc in (("Latest checkpoint's TimeLineID", "Latest checkpoint location"),
                                   ("Min recovery ending loc's timeline", "Minimum recovery ending location"))]
        state = dict(kind="cluster", major=major, system_identifier=fields.get("Database system identifier"),
                     wal_position=max(points),
                     cluster_state=fields.get("Database cluster state"), running=rc == 0,
                     standby_signal=os.path.exists(os.path.join(d, "standby.signal")))
        if state["running"]:
            state.update(self.local_status())
        return state

    def local_status(self):
        conn = self.local_connection()
        try:
            cur = conn.cursor()
            cur.execute(LOCAL_SQL)
            row = cur.fetchone()
        finally:
            conn.close()
        keys = ("in_recovery", "primary_conninfo", "primary_slot_name", "status", "sender_host", "sender_port",
                "slot_name", "replay_lsn", "timeline", "replay_lag_seconds")
        return dict(zip(keys, row))

    # --- decisions -------------------------------------------------------------------
    def refusal(self, local, source):
        """Why this data directory may not be replaced without rebuild (None when it may)."""
        d = self.data_dir
        if local["kind"] == "foreign":
            return ("%s is not empty and is not a PostgreSQL data directory (it holds %s)"
                    % (d, ", ".join(local["entries"])))
        if local["system_identifier"] != source["system_identifier"]:
            return ("%s belongs to another PostgreSQL system (system identifier %s; the source's is %s)"
                    % (d, local["system_identifier"], source["system_identifier"]))
        if local["running"] and not local["in_recovery"]:
            return ("%s belongs to a running primary (not in recovery): it may hold writes the source does not have, "
                    "as an old primary after a failover does" % d)
        if not local["running"] and not local["standby_signal"]:
            return ("%s is a stopped cluster that is not a standby (no standby.signal; state: %s): "
                    "it may hold writes the source does not have" % (d, local["cluster_state"]))
        return self.diverged(local, source)

    def diverged(self, local, source):
        """Why a standby cannot follow the source's timeline (None when it can): it replayed WAL
        past the point where the source's timeline forked, as after a point-in-time restore
        of the primary or a promotion of another replica."""
        tli, position = local["wal_position"]
        if local.get("running") and local.get("replay_lsn"):
            position = max(position, lsn_to_int(local["replay_lsn"]))
        if tli == source["timeline"]:
            return None
        if tli > source["timeline"]:
            return ("%s is on timeline %d, ahead of the source's timeline %d" % (self.data_dir, tli, source["timeline"]))
        history = self.replication_command(*self.source(), command="TIMELINE_HISTORY %d" % source["timeline"])[1]
        history = bytes(history).decode() if not isinstance(history, str) else history
        forks = {}
        for line in history.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].isdigit():
                forks[int(fields[0])] = fields[1]
        if tli not in forks:
            return ("%s is on timeline %d, which is not in the history of the source's timeline %d"
                    % (self.data_dir, tli, source["timeline"]))
        if position > lsn_to_int(forks[tli]):
            return ("%s replayed WAL up to %s on timeline %d, past %s where the source's timeline %d forked from it: "
                    "it holds WAL the source does not have"
                    % (self.data_dir, int_to_lsn(position), tli, forks[tli], source["timeline"]))
        return None

    def desired(self):
        host, port = self.source()
        return desired_conninfo(host, port, self.p["replication_user"], self.passfile(),
                                self.p["application_name"], self.p["ssl_mode"], self.p["ssl_rootcert"])

    def settings_differ(self, local):
        current = parse_dsn(local["primary_conninfo"]) if local["primary_conninfo"] else {}
        return conninfo_differs(current, self.desired()) or (local["primary_slot_name"] or "") != (self.p["slot"] or "")

    def streaming_from_source(self, local):
        host, port = self.source()
        return local.get("status") == "streaming" and local.get("sender_host") == host and local.get("sender_port") == port

    def plan(self, local, source):
        if local["kind"] == "empty":
            return "cloned"
        why = self.refusal(local, source)
        if why:
            if not self.p["rebuild"]:
                raise ModuleFailure(why + ". Nothing was changed; set rebuild=true to replace it with a copy of the source.")
            return "rebuilt"
        if not local["running"]:
            return "started"
        if self.settings_differ(local) or not self.streaming_from_source(local):
            return "configured"
        return "none"

    # --- changes ---------------------------------------------------------------------
    def write_passfile(self):
        if not self.p["replication_password"]:
            return False
        host, port = self.source()
        path = self.passfile()
        try:
            with open(path) as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        new = pgpass_update(old, host, port, self.p["replication_user"], self.p["replication_password"])
        if new == old:
            return False
        if not self.module.check_mode:
            fd = os.open(path + ".pgfleet-tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new)
            self.os_user.chown(path + ".pgfleet-tmp")
            os.replace(path + ".pgfleet-tmp", path)
        return True

    def ensure_slot(self, source):
        if not self.p["slot"] or source["slot_exists"]:
            return
        command = "CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL" % self.p["slot"]
        self.queries.append(command)
        if self.module.check_mode:
            return
        self.replication_command(*self.source(), command)

    def stop(self):
        if self.p["service"]:
            self.run(["systemctl", "stop", self.p["service"]], as_owner=False)
        else:
            self.run([self.bin("pg_ctl"), "stop", "-D", self.data_dir, "-m", "fast", "-w"])

    def start(self):
        if self.p["service"]:
            self.run(["systemctl", "start", self.p["service"]], as_owner=False)
        else:
            log = self.p["log_file"] or os.path.join(self.data_dir, "startup.log")
            self.run([self.bin("pg_ctl"), "start", "-D", self.p["config_dir"] or self.data_dir, "-l", log, "-w",
                      "-t", str(self.p["wait_timeout"])])

    def empty_data_dir(self):
        d = self.data_dir
        if not os.path.isdir(d):
            os.makedirs(d, 0o700)
        for name in os.listdir(d):
            path = os.path.join(d, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        os.chmod(d, 0o700)
        self.os_user.chown(d)

    def copy(self, local):
        host, port = self.source()
        env = dict(PGPASSFILE=self.passfile(), PGAPPNAME=self.p["application_name"], PGSSLMODE=self.p["ssl_mode"],
                   PGCONNECT_TIMEOUT=str(self.p["connect_timeout"]))
        if self.p["ssl_rootcert"]:
            env["PGSSLROOTCERT"] = self.p["ssl_rootcert"]
        if self.p["method"] == "pgbackrest":
            # --delta reuses the files that match the backup; it needs a PostgreSQL data directory.
            delta = local["kind"] == "cluster"
            if not delta:
                self.empty_data_dir()
            self.run(["pgbackrest", "--config=%s" % self.p["pgbackrest_config"], "--stanza=%s" % self.p["pgbackrest_stanza"],
                      "--pg1-path=%s" % self.data_dir, "--type=standby"] + (["--delta"] if delta else []) + ["restore"])
            return
        self.empty_data_dir()
        argv = [self.bin("pg_basebackup"), "--host=%s" % host, "--port=%s" % port,
                "--username=%s" % self.p["replication_user"], "--pgdata=%s" % self.data_dir,
                "--wal-method=stream", "--checkpoint=fast", "--no-password"]
        if self.p["slot"]:
            argv.append("--slot=%s" % self.p["slot"])
        self.run(argv, env=env)

    def write_standby_files(self):
        """primary_conninfo and primary_slot_name in postgresql.auto.conf, no recovery target, and
        standby.signal (server stopped)."""
        path = os.path.join(self.data_dir, "postgresql.auto.conf")
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        text = auto_conf_without(text, STANDBY_KEYS + RECOVERY_TARGET_KEYS)
        if text and not text.endswith("\n"):
            text += "\n"
        text += "primary_conninfo = %s\n" % conf_quote(make_dsn(**self.desired()))
        if self.p["slot"]:
            text += "primary_slot_name = %s\n" % conf_quote(self.p["slot"])
        for name, content in (("postgresql.auto.conf", text), ("standby.signal", "")):
            target = os.path.join(self.data_dir, name)
            with open(target, "w") as f:
                f.write(content)
            os.chmod(target, 0o600)
            self.os_user.chown(target)
        self.commands.append("write primary_conninfo and primary_slot_name to %s (recovery targets removed); "
                             "touch standby.signal" % path)

    def reconfigure_running(self):
        conn = self.local_connection()
        try:
            cur = conn.cursor()
            statements = [("ALTER SYSTEM SET primary_conninfo = %s", (make_dsn(**self.desired()),))]
            if self.p["slot"]:
                statements.append(("ALTER SYSTEM SET primary_slot_name = %s", (self.p["slot"],)))
            else:
                statements.append(("ALTER SYSTEM RESET primary_slot_name", None))
            statements.append(("SELECT pg_reload_conf()", None))
            for query, params in statements:
                self.queries.append(cur.mogrify(query, params).decode())
                if not self.module.check_mode:
                    cur.execute(query, params)
        finally:
            conn.close()

    def wait_streaming(self):
        deadline = time.time() + self.p["wait_timeout"]
        while True:
            status = self.local_status()
            if self.streaming_from_source(status):
                return status
            if time.time() > deadline:
                self.fail("%s did not start streaming from %s:%s within %d s (WAL receiver: %s)"
                          % (self.data_dir, self.source()[0], self.source()[1], self.p["wait_timeout"],
                             status.get("status") or "not running"))
            time.sleep(0.5)

    def apply(self, action, local, source):
        check = self.module.check_mode
        if action in ("cloned", "rebuilt"):
            self.ensure_slot(source)
            if check:
                self.commands.append("%s %s from %s:%s" % (self.p["method"], self.data_dir, *self.source()))
                return
            if local.get("running"):
                self.stop()
            self.copy(local)
            self.write_standby_files()
            self.start()
        elif action == "started":
            self.ensure_slot(source)
            if check:
                return
            self.write_standby_files()
            self.start()
        elif action == "configured":
            self.ensure_slot(source)
            self.reconfigure_running()
        if not check and action != "none":
            self.wait_streaming()

    def replication_state(self):
        status = self.local_status()
        lag_bytes = None
        if status["in_recovery"]:
            primary = self.primary_wal_position()
            replay = lsn_to_int(status["replay_lsn"])
            if primary is not None and replay is not None:
                lag_bytes = max(0, primary - replay)
        else:
            lag_bytes = 0
        return dict(in_recovery=status["in_recovery"], streaming=status["status"] == "streaming",
                    status=status["status"], sender_host=status["sender_host"], sender_port=status["sender_port"],
                    slot_name=status["slot_name"], timeline=status["timeline"], replay_lsn=status["replay_lsn"],
                    replay_lag_bytes=lag_bytes, replay_lag_seconds=status["replay_lag_seconds"])

    # --- states --------------------------------------------------------------------
    def present(self):
        source = self.inspect_source()
        self.bin_dir = self.p["bin_dir"] or "/usr/lib/postgresql/%s/bin" % source["major"]
        local = self.inspect_local()
        if local["kind"] == "cluster" and local["major"] != source["major"]:
            if not self.p["rebuild"]:
                raise ModuleFailure("%s holds PostgreSQL %s, the source runs %s. Nothing was changed; set rebuild=true to "
                                    "replace it." % (self.data_dir, local["major"], source["major"]))
        action = self.plan(local, source)
        passfile_updated = self.write_passfile()
        self.apply(action, local, source)
        before = self.view(local)
        after = dict(state="standby", system_identifier=source["system_identifier"],
                     primary_conninfo=make_dsn(**self.desired()), primary_slot_name=self.p["slot"] or "")
        result = dict(changed=action != "none" or passfile_updated, action=action,
                      passfile_updated=passfile_updated, system_identifier=source["system_identifier"])
        if not self.module.check_mode:
            result["replication"] = self.replication_state()
        return result, before, after

    def promoted(self):
        local = self.inspect_local()
        if local["kind"] != "cluster" or not local["running"]:
            raise ModuleFailure("%s is not a running PostgreSQL cluster; start it before promoting it" % self.data_dir)
        action = "promoted" if local["in_recovery"] else "none"
        if action == "promoted":
            conn = self.local_connection()
            try:
                cur = conn.cursor()
                query = cur.mogrify("SELECT pg_promote(true, %s)", (self.p["wait_timeout"],)).decode()
                self.queries.append(query)
                if not self.module.check_mode:
                    cur.execute(query)
                    if not cur.fetchone()[0]:
                        self.fail("%s was not promoted within %d s" % (self.data_dir, self.p["wait_timeout"]))
            finally:
                conn.close()
        result = dict(changed=action != "none", action=action, passfile_updated=False,
                      system_identifier=local["system_identifier"])
        if not self.module.check_mode:
            after_status = self.local_status()
            result["replication"] = dict(in_recovery=after_status["in_recovery"], streaming=False, status=None,
                                         sender_host=None, sender_port=None, slot_name=None,
                                         timeline=self.current_timeline(), replay_lsn=after_status["replay_lsn"],
                                         replay_lag_bytes=0, replay_lag_seconds=0.0)
        after = dict(self.view(local), state="primary")
        return result, self.view(local), after

    def current_timeline(self):
        """The timeline of the WAL being written (pg_control's checkpoint lags behind a promotion)."""
        conn = self.local_connection()
        try:
            cur = conn.cursor()
            cur.execute("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
            return cur.fetchone()[0]
        finally:
            conn.close()

    def view(self, local):
        if local["kind"] != "cluster":
            return dict(state=local["kind"])
        if local["running"]:
            state = "standby" if local["in_recovery"] else "primary"
        else:
            state = "stopped standby" if local["standby_signal"] else "stopped primary"
        return dict(state=state, system_identifier=local["system_identifier"],
                    primary_conninfo=local.get("primary_conninfo") or "",
                    primary_slot_name=local.get("primary_slot_name") or "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "promoted"]),
            data_dir=dict(type="path", required=True),
            primary_host=dict(type="str"),
            primary_port=dict(type="int", default=5432),
            upstream_host=dict(type="str"),
            upstream_port=dict(type="int", default=5432),
            replication_user=dict(type="str", default="replicator"),
            replication_password=dict(type="str", no_log=True),
            passfile=dict(type="path", no_log=False),
            slot=dict(type="str"),
            create_slot=dict(type="bool", default=True),
            method=dict(type="str", default="basebackup", choices=["basebackup", "pgbackrest"]),
            pgbackrest_stanza=dict(type="str"),
            pgbackrest_config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
            ssl_mode=dict(type="str", default="prefer",
                          choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
            ssl_rootcert=dict(type="path"),
            application_name=dict(type="str"),
            rebuild=dict(type="bool", default=False),
            os_user=dict(type="str", default="postgres"),
            bin_dir=dict(type="path"),
            service=dict(type="str"),
            config_dir=dict(type="path"),
            log_file=dict(type="path"),
            port=dict(type="int", default=5432),
            unix_socket=dict(type="path", default="/var/run/postgresql"),
            wait_timeout=dict(type="int", default=300),
            connect_timeout=dict(type="int", default=10),
        ),
        required_if=[("state", "present", ("primary_host",)),
                     ("method", "pgbackrest", ("pgbackrest_stanza",))],
        supports_check_mode=True,
    )
    state = {}
    run_guarded(module, lambda: apply(module, state),
                lambda: dict(commands=state["replica"].commands, queries=state["replica"].queries)
                if "replica" in state else {})


def apply(module, state):
    if PSYCOPG2_IMPORT_ERROR:
        raise ModuleFailure(missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    p = module.params
    # The role name goes into primary_conninfo and the password file: a NUL would cut it.
    check_identifiers([("replication_user", p["replication_user"])])
    why = stanza_error("pgbackrest_stanza", p["pgbackrest_stanza"]) if p["pgbackrest_stanza"] is not None else None
    if why:
        raise ModuleFailure(why)
    if p["slot"] is not None and not SLOT_RE.match(p["slot"]):
        raise ModuleFailure("slot: %r is not a valid replication slot name (lower-case letters, digits and "
                            "underscores, at most 63)" % p["slot"])
    if p["application_name"] is None:
        p["application_name"] = re.sub(r"[^A-Za-z0-9_.@-]", "_", socket.gethostname().split(".")[0])[:63]
    if not APP_NAME_RE.match(p["application_name"]):
        raise ModuleFailure("application_name: %r may hold only letters, digits and _ . @ - (at most 63)"
                            % p["application_name"])
    for key in ("primary_port", "upstream_port", "port"):
        if not 0 < p[key] < 65536:
            raise ModuleFailure("%s: %r is not a TCP port" % (key, p[key]))
    try:
        replica = state["replica"] = Replica(module, OsUser(p["os_user"]))
    except ValueError as e:
        raise ModuleFailure(str(e))
    result, before, after = replica.promoted() if p["state"] == "promoted" else replica.present()
    result.update(commands=replica.commands, queries=replica.queries)
    if module._diff:
        result["diff"] = dict(before=before, after=after if result["changed"] else before)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
