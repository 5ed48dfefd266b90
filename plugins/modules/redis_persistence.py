#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_persistence
short_description: Redis persistence (RDB and AOF), changed live without losing data
version_added: 0.1.0
description:
  - Compares the wanted persistence settings with C(CONFIG GET) and applies the
    differences to the running server with C(CONFIG SET), then persists them to its
    configuration file with C(CONFIG REWRITE). Nothing is restarted.
  - Turning AOF on waits until Redis has written the whole dataset into the new AOF
    (C(INFO persistence)) before the change is written to the configuration file, so a
    restart afterwards loads the dataset from the AOF. Switching persistence by editing
    the file and restarting instead loads an empty AOF and loses the data (redis#12484).
  - A new I(dir) is tried with a snapshot into it (and an AOF rewrite when AOF is on);
    if Redis cannot write there, the old directory is put back and the module fails -
    a restart would otherwise look for the data where it is not. Redis 7 allows changing
    C(dir) at run time only with C(enable-protected-configs); otherwise the module says so
    and changes nothing.
  - Before changing anything the module checks that C(CONFIG REWRITE) works, so a change
    is never made only in memory.
extends_documentation_fragment:
  - pgfleet.core.redis
  - pgfleet.core.attributes
options:
  save:
    description:
      - RDB snapshot points, each C("<seconds> <changes>"). An empty list turns RDB
        snapshots off. Unset leaves them as they are.
    type: list
    elements: str
  appendonly:
    description: Whether the append-only file is on.
    type: bool
  appendfsync:
    description: When the AOF is fsynced.
    type: str
    choices: [always, everysec, "no"]
  aof_use_rdb_preamble:
    description: Start AOF rewrites with an RDB image (faster rewrites and loads).
    type: bool
  auto_aof_rewrite_percentage:
    description: Growth of the AOF, in percent of its size after the last rewrite, that triggers a rewrite (0 disables).
    type: int
  auto_aof_rewrite_min_size:
    description: Smallest AOF that is rewritten automatically, as Redis writes sizes (C(64mb), C(1gb), bytes).
    type: str
  dir:
    description: Directory of the RDB file and the AOF directory; it must exist and be writable by Redis.
    type: path
  dbfilename:
    description: RDB file name (no directory).
    type: str
  snapshot:
    description: After a change, take an RDB snapshot (C(BGSAVE)) and wait for it.
    type: bool
    default: false
  persist:
    description: Write the changes to the configuration file with C(CONFIG REWRITE).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for an AOF rewrite or a snapshot.
    type: int
    default: 600
notes:
  - Check mode compares and reports the commands it would send; it sends none of them.
requirements:
  - redis-py on the host that runs the module (Debian package python3-redis)
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: AOF every second, hourly RDB snapshots, switched live
  pgfleet.core.redis_persistence:
    login_user: admin
    login_password: "{{ vault_redis_admin_password }}"
    appendonly: true
    appendfsync: everysec
    save: ["3600 1", "300 100"]
    snapshot: true

- name: A pure cache - no persistence at all
  pgfleet.core.redis_persistence:
    login_user: admin
    login_password: "{{ vault_redis_admin_password }}"
    appendonly: false
    save: []
"""

RETURN = r"""
commands:
  description: The Redis commands sent (or that would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["CONFIG REWRITE", "CONFIG SET appendonly yes", "CONFIG REWRITE"]
settings:
  description: The managed settings after the run, as Redis reports them.
  returned: always
  type: dict
  sample: {appendonly: "yes", appendfsync: everysec, save: "3600 1 300 100", dir: /var/lib/redis}
aof_rewrite_seconds:
  description: How long the AOF rewrite took when AOF was turned on.
  returned: when AOF was turned on
  type: float
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure, run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.redis_client import RedisSession, redis_argument_spec

# Option name -> Redis parameter, in the order changes are applied: the directory first
# (everything is written there), AOF on or off last (it starts the rewrite).
PARAMS = (("dir", "dir"), ("dbfilename", "dbfilename"), ("save", "save"), ("appendfsync", "appendfsync"),
          ("aof_use_rdb_preamble", "aof-use-rdb-preamble"),
          ("auto_aof_rewrite_percentage", "auto-aof-rewrite-percentage"),
          ("auto_aof_rewrite_min_size", "auto-aof-rewrite-min-size"), ("appendonly", "appendonly"))

UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}


def redis_size(text):
    """Bytes for a Redis size such as 64mb (Redis' own units: k=1000, kb=1024)."""
    match = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(text))
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def save_points(points):
    """'3600 1 300 100' for ['3600 1', '300 100']; ValueError on anything else."""
    numbers = []
    for point in points:
        parts = str(point).split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) == 0:
            raise ValueError(point)
        numbers += [str(int(p)) for p in parts]
    return " ".join(numbers)


def wanted_values(module):
    """The wanted settings as CONFIG GET would print them; bad values end the module."""
    p = module.params
    out = {}
    for option, name in PARAMS:
        value = p[option]
        if value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif option == "save":
            try:
                value = save_points(value)
            except ValueError as e:
                raise ModuleFailure("save: %r is not '<seconds> <changes>' with seconds > 0" % str(e))
        elif option == "auto_aof_rewrite_min_size":
            try:
                value = str(redis_size(value))
            except ValueError:
                raise ModuleFailure("auto_aof_rewrite_min_size: %r is not a size such as 64mb" % value)
        elif option == "auto_aof_rewrite_percentage" and value < 0:
            raise ModuleFailure("auto_aof_rewrite_percentage: %r must be 0 or more" % value)
        elif option == "dir":
            value = os.path.normpath(value)
        elif option == "dbfilename" and ("/" in value or not value):
            raise ModuleFailure("dbfilename: %r must be a file name without a directory" % value)
        out[name] = str(value)
    return out


class Persistence:
    def __init__(self, module, session):
        self.module = module
        self.session = session
        self.timeout = module.params["wait_timeout"]

    def current(self, names):
        return {name: self.session.config_get(name) for name in names}

    def counter(self, field):
        return self.session.info("persistence").get(field, 0)

    def wait_rewrite(self, before):
        """Until the AOF rewrite that started after BEFORE rewrites has finished, and succeeded."""
        info = self.session.wait_info(
            "persistence", lambda i: i["aof_rewrites"] > before and not i["aof_rewrite_in_progress"]
            and not i["aof_rewrite_scheduled"], self.timeout, "the AOF rewrite")
        if info["aof_last_bgrewrite_status"] != "ok":
            self.session.fail("the AOF rewrite failed (aof_last_bgrewrite_status: %s); see the Redis log"
                              % info["aof_last_bgrewrite_status"])

    def snapshot(self):
        """BGSAVE and wait; returns Redis' status of it ('ok' or 'err')."""
        before = self.counter("rdb_saves")
        self.session.call("BGSAVE")
        info = self.session.wait_info(
            "persistence", lambda i: i["rdb_saves"] > before and not i["rdb_bgsave_in_progress"],
            self.timeout, "the RDB snapshot")
        return info["rdb_last_bgsave_status"]

    def move_dir(self, old, new):
        self.session.commands.append("CONFIG SET dir %s" % new)
        try:
            self.session.client.config_set("dir", new)
        except self.session.errors.ResponseError as e:
            if "protected config" in str(e):
                self.session.fail(
                    "dir: Redis 7 refuses to change dir at run time (a protected config, see "
                    "enable-protected-configs): set dir in its configuration file and move the RDB "
                    "file and AOF directory there while Redis is stopped. Nothing was changed.")
            self.session.fail("dir: Redis refused %r: %s. Nothing was changed." % (new, e))
        if self.snapshot() != "ok":
            self.session.call("CONFIG", "SET", "dir", old)
            self.session.fail("dir: Redis cannot write a snapshot to %r (rdb_last_bgsave_status: err, see the "
                              "Redis log); dir is back to %r and nothing else was changed" % (new, old))
        if self.session.config_get("appendonly") == "yes":
            before = self.counter("aof_rewrites")
            self.session.call("BGREWRITEAOF")
            self.wait_rewrite(before)

    def apply(self, changes, before):
        result = {}
        for name, value in changes.items():
            if name == "dir":
                self.move_dir(before["dir"], value)
            elif name == "appendonly" and value == "yes":
                rewrites = self.counter("aof_rewrites")
                started = time.monotonic()
                self.session.call("CONFIG", "SET", "appendonly", "yes")
                self.wait_rewrite(rewrites)
                result["aof_rewrite_seconds"] = round(time.monotonic() - started, 3)
            else:
                self.session.call("CONFIG", "SET", name, value)
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            redis_argument_spec(),
            save=dict(type="list", elements="str"),
            appendonly=dict(type="bool"),
            appendfsync=dict(type="str", choices=["always", "everysec", "no"]),
            aof_use_rdb_preamble=dict(type="bool"),
            auto_aof_rewrite_percentage=dict(type="int"),
            auto_aof_rewrite_min_size=dict(type="str"),
            dir=dict(type="path"),
            dbfilename=dict(type="str"),
            snapshot=dict(type="bool", default=False),
            persist=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    state = {}
    run_guarded(module, lambda: apply(module, state),
                lambda: dict(commands=state["session"].commands) if "session" in state else {})


def apply(module, state):
    wanted = wanted_values(module)
    session = state["session"] = RedisSession(module)
    persistence = Persistence(module, session)
    names = [name for option, name in PARAMS]
    before = persistence.current(names)
    changes = {name: value for name, value in wanted.items() if before[name] != value}
    result = {}
    if changes and module.check_mode:
        session.commands.extend(session.describe(("CONFIG", "SET") + kv) for kv in changes.items())
    elif changes:
        if module.params["persist"]:
            # Fails here, before any change, when the file cannot be written.
            session.call("CONFIG", "REWRITE")
        result = persistence.apply(changes, before)
        if module.params["snapshot"] and persistence.snapshot() != "ok":
            session.fail("the snapshot after the change failed (rdb_last_bgsave_status: err); see the Redis log")
        if module.params["persist"]:
            session.call("CONFIG", "REWRITE")
    after = dict(before, **changes) if module.check_mode else persistence.current(names)
    result.update(changed=bool(changes), commands=session.commands, settings=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
