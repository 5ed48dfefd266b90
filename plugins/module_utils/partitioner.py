# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The partition engine behind pg_partition and the host-side daily maintenance.

No Ansible import (errors raise ModuleFailure): the module calls it with its params, and the
pgfleet-partition-maintenance runner (role postgresql_partitions) with the same
params read from a file, so both run exactly this code.
"""

from __future__ import annotations

import re
import time

from ansible_collections.pgfleet.core.plugins.module_utils import partitions as P
from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure
from ansible_collections.pgfleet.core.plugins.module_utils.postgres import (
    check_identifiers, identifier_error, psycopg2, qualified, sql,
)

# Defaults of the pg_partition options, for callers that are not the module.
DEFAULTS = dict(schema="public", step=None, premake=4, start=None, retention=None, retention_mode="drop",
                archive_schema=None, default_partition=False, move_batch_size=10000, lock_timeout="2s",
                lock_retries=5, detach_concurrently=True)

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired

PARENT_SQL = """
SELECT c.oid, c.relkind, pt.partstrat, pt.partnatts, a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod),
       pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
WHERE n.nspname = %s AND c.relname = %s
"""

CHILDREN_SQL = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = %s
"""


class Plan:
    def __init__(self):
        self.steps = []  # (kind, name, [statements]); a ('move', statement) tuple repeats in batches
        self.created, self.detached, self.dropped, self.rows_moved = [], [], [], {}
        self.finalized = []  # partitions whose interrupted DETACH ... CONCURRENTLY is completed
        self.warnings = []


class Partitioner:
    """Errors raise ModuleFailure with the queries run so far."""

    def __init__(self, params, session):
        self.p = params
        self.session = session
        self.finalized_during_run = []

    def fail(self, msg):
        raise ModuleFailure(msg, queries=self.session.queries)

    # ---- reading the table -------------------------------------------------------
    def read_parent(self):
        p = self.p
        rows = self.session.fetch(PARENT_SQL, (p["schema"], p["table"]))
        if not rows:
            self.fail("table %s.%s does not exist in database %r" % (p["schema"], p["table"], p["login_db"]))
        oid, relkind, strategy, natts, key, typoid, typname, owner = rows[0]
        if relkind != "p":
            self.fail("%s.%s is not a partitioned table: create it with PARTITION BY RANGE (column)"
                      % (p["schema"], p["table"]))
        if strategy != "r" or natts != 1 or key is None:
            self.fail("%s.%s must be partitioned BY RANGE on one column (strategy %r, %d key column(s), "
                      "expressions not supported)" % (p["schema"], p["table"], strategy, natts))
        if p["interval"] == "integer":
            type_name = P.INT_TYPES.get(typoid)
            wanted = "smallint, integer or bigint"
        else:
            type_name = P.TIME_TYPES.get(typoid)
            wanted = "date, timestamp or timestamptz"
        if type_name is None:
            self.fail("partition key %s of %s.%s has type %s; interval=%s needs %s"
                      % (key, p["schema"], p["table"], typname, p["interval"], wanted))
        self.oid, self.key, self.type_name, self.owner = oid, key, type_name, owner
        self.login_role = self.session.fetch("SELECT current_user")[0][0]

    def read_children(self):
        children, default, pending = [], None, []
        for name, bound, detach_pending in self.session.fetch(CHILDREN_SQL, (self.oid,)):
            if detach_pending:
                pending.append(name)
            rng = P.parse_bound(bound, self.type_name)
            if rng is None:
                default = name
            else:
                children.append((rng, name))
        children.sort(key=lambda c: (c[0][0], c[0][1]))
        return children, default, pending

    # ---- what should exist ---------------------------------------------------------
    def server_value(self, query, params, refusal):
        """Let the server judge a user value; on error fail with REFUSAL and its message."""
        try:
            self.session.fetch("SAVEPOINT pgfleet_value")
            value = self.session.fetch(query, params)[0][0]
            self.session.fetch("RELEASE SAVEPOINT pgfleet_value")
            return value
        except psycopg2.Error as e:
            self.session.fetch("ROLLBACK TO SAVEPOINT pgfleet_value")
            self.fail("%s: %s" % (refusal, str(e).strip()))

    def desired_ranges(self, children):
        p = self.p
        if p["interval"] == "integer":
            current = self.session.fetch(sql.SQL("SELECT max({}) FROM {}").format(
                sql.Identifier(self.key), qualified(p["schema"], p["table"])))[0][0]
            first = int(p["start"]) if p["start"] is not None else None
            regular = [c[0] for c in children if not isinstance(c[0][0], P.Unbounded)]
            if current is None:
                current = first if first is not None else (regular[-1][0] if regular else 0)
            if first is None:
                first = min([current] + [r[0] for r in regular])
            last = (current // p["step"]) * p["step"] + p["premake"] * p["step"]
            ranges = P.int_ranges(min(first, current), last, p["step"])
            return ranges, (current // p["step"]) * p["step"]
        now = self.session.fetch("SELECT (now() AT TIME ZONE 'UTC')::timestamp")[0][0]
        current = P.align(now, p["interval"])
        if p["start"] is not None:
            first = P.align(self.start_value, p["interval"])
        else:
            regular = [c[0][0] for c in children if not isinstance(c[0][0], P.Unbounded)]
            first = min([current] + [P.align(lo, p["interval"]) for lo in regular])
        last = P.advance(current, p["interval"], p["premake"])
        ranges = P.time_ranges(min(first, current), last, p["interval"])
        if self.cutoff is not None:
            ranges = [r for r in ranges if r[1] > self.cutoff or r[0] >= current]
        return ranges, current

    def validate(self):
        p = self.p
        check_identifiers([("schema", p["schema"]), ("table", p["table"]), ("archive_schema", p["archive_schema"])])
        if p["interval"] == "integer":
            if not p["step"] or p["step"] <= 0:
                self.fail("interval=integer needs a positive step, got step=%r" % p["step"])
        elif p["step"] is not None:
            self.fail("step is only for interval=integer, not interval=%s" % p["interval"])
        if p["premake"] < 0:
            self.fail("premake must be 0 or more, got %d" % p["premake"])
        if p["move_batch_size"] <= 0:
            self.fail("move_batch_size must be positive, got %d" % p["move_batch_size"])
        if p["lock_retries"] < 0:
            self.fail("lock_retries must be 0 or more, got %d" % p["lock_retries"])
        if p["retention_mode"] == "move" and not p["archive_schema"]:
            self.fail("retention_mode=move needs archive_schema")
        self.server_value("SELECT set_config('lock_timeout', %s, false)", (p["lock_timeout"],),
                          "lock_timeout %r is not valid" % p["lock_timeout"])
        self.start_value = None
        if p["start"] is not None:
            if p["interval"] == "integer":
                if not re.match(r"^-?\d+$", p["start"].strip()):
                    self.fail("start %r is not an integer (interval=integer)" % p["start"])
            else:
                self.start_value = self.server_value(
                    "SELECT (%s::timestamptz AT TIME ZONE 'UTC')::timestamp", (p["start"],),
                    "start %r is not a date or timestamp" % p["start"])
        self.cutoff, self.keep_count = None, None
        r = p["retention"]
        if r is not None:
            if re.match(r"^\s*\d+\s*$", r):
                self.keep_count = int(r)
                if self.keep_count < 1:
                    self.fail("retention %r must keep at least one partition" % r)
            elif p["interval"] == "integer":
                self.fail("retention %r: an integer-partitioned table takes a count of partitions" % r)
            else:
                self.cutoff = self.server_value(
                    "SELECT (now() AT TIME ZONE 'UTC')::timestamp - %s::interval", (r,),
                    "retention %r is neither a count nor an interval" % r)

    # ---- building the plan -----------------------------------------------------------
    def plan(self):
        p = self.p
        self.validate()
        self.read_parent()
        children, default, pending = self.read_children()
        self.before = self.report(children, default)
        ranges, current = self.desired_ranges(children)
        if self.keep_count is not None:  # never create what retention would remove at once
            too_old = set([r for r in ranges if r[0] <= current][:-self.keep_count])
            ranges = [r for r in ranges if r not in too_old]
        parent = qualified(p["schema"], p["table"])
        plan = Plan()
        existing = dict(children)
        relnames = {row[0] for row in self.session.fetch(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            (p["schema"],))}

        # A DETACH ... CONCURRENTLY that was interrupted (timed out in its second phase, or
        # cancelled) leaves the partition pending detach: invisible to new queries, still in
        # pg_inherits, and blocking every other concurrent detach of the table. Complete it
        # first, under the same lock_timeout and retries; retention then finishes with it below.
        for name in pending:
            plan.steps.append(("finalize", name, [self.finalize_statement(name)]))
            plan.finalized.append(name)

        if p["default_partition"] and default is None:
            name = p["table"] + "_default"
            why = identifier_error("default partition name", name)
            if why:
                self.fail(why + ": use a shorter table name")
            self.check_name(name, relnames)
            plan.steps.append(("default", name, self.create_statements(name, None)))
            plan.created.append(name)
            relnames.add(name)

        default_name = default or (p["table"] + "_default" if p["default_partition"] else None)
        for rng in ranges:
            if rng in existing:
                continue
            clash = [(r, n) for r, n in children if P.overlaps(r, rng)]
            if clash:
                (lo, hi), n = clash[0]
                self.fail("interval=%s wants a partition for [%s, %s) but it overlaps the existing partition %s "
                          "for [%s, %s): the interval or step does not match the existing partitions"
                          % (p["interval"], P.literal(rng[0], self.type_name), P.literal(rng[1], self.type_name),
                             n, lo, hi))
            try:
                name = P.partition_name(p["table"], rng[0], p["interval"])
            except ValueError as e:
                self.fail(str(e))
            self.check_name(name, relnames)
            relnames.add(name)
            moved = 0
            if default is not None:
                moved = self.count_default_rows(default, rng)
            plan.steps.append(("create", name, self.create_statements(name, rng, default_name if moved else None)))
            plan.created.append(name)
            if moved:
                plan.rows_moved[name] = moved

        planned = children + [(rng, None) for rng in ranges if rng not in existing]
        newest = max(c[0][1] for c in planned) if planned else None
        expired = [name for _rng, name in self.expired(children, current, newest)]
        for name in pending:
            if name not in expired:
                plan.warnings.append(
                    "partition %s.%s was pending detach (an interrupted DETACH ... CONCURRENTLY) although retention "
                    "keeps it: it was finalized and left as a standalone table; re-attach it by hand if it is still "
                    "needed" % (p["schema"], name))
                plan.detached.append(name)
        self.retire(plan, parent, expired, default_name, pending)
        return plan

    def finalize_statement(self, name):
        return sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(
            qualified(self.p["schema"], self.p["table"]), qualified(self.p["schema"], name))

    def detach_pending(self, name):
        """Whether NAME is now a partition pending detach (the first phase of a concurrent detach committed)."""
        return bool(self.session.fetch(
            "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s AND c.relname = %s AND i.inhdetachpending", (self.oid, name)))

    def check_name(self, name, relnames):
        if name in relnames:
            self.fail("cannot create partition %s.%s: a relation of that name exists and is not a partition of %s"
                      % (self.p["schema"], name, self.p["table"]))

    def count_default_rows(self, default, rng):
        # Values as sql.Literal: composed SQL never goes through %-formatting (a '%' in a name).
        q = sql.SQL("SELECT count(*) FROM {} WHERE {} >= {} AND {} < {}").format(
            qualified(self.p["schema"], default), sql.Identifier(self.key),
            sql.Literal(P.literal(rng[0], self.type_name)), sql.Identifier(self.key),
            sql.Literal(P.literal(rng[1], self.type_name)))
        return self.session.fetch(q)[0][0]

    def expired(self, children, current, newest_upper):
        """Existing partitions retention removes; never the newest one after this run."""
        regular = [(r, n) for r, n in children if not isinstance(r[1], P.Unbounded)]
        if self.keep_count is not None:
            past = [c for c in regular if not (c[0][0] > current)]
            doomed = past[:-self.keep_count] if len(past) > self.keep_count else []
        elif self.cutoff is not None:
            doomed = [c for c in regular if c[0][1] <= self.cutoff]
        else:
            doomed = []
        return [c for c in doomed if c[0][1] != newest_upper]

    def create_statements(self, name, rng, default_with_rows=None):
        """Standalone table + CHECK, rows from DEFAULT, ATTACH, drop the CHECK."""
        p = self.p
        child, parent = qualified(p["schema"], name), qualified(p["schema"], p["table"])
        key = sql.Identifier(self.key)
        check = sql.Identifier(P.fit_name(name, "_bounds"))
        stmts = [sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE "
                         "INCLUDING COMMENTS INCLUDING GENERATED)").format(child, parent)]
        if self.login_role != self.owner:
            stmts.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(child, sql.Identifier(self.owner)))
        if rng is None:
            stmts.append(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(parent, child))
            return stmts
        lo, hi = sql.Literal(P.literal(rng[0], self.type_name)), sql.Literal(P.literal(rng[1], self.type_name))
        stmts.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL AND {} >= {} AND {} < {})").format(
            child, check, key, key, lo, key, hi))
        if default_with_rows:
            default = qualified(p["schema"], default_with_rows)
            # Lock the DEFAULT partition against writers, so no row for this range
            # lands there between the move and the ATTACH (which checks it).
            stmts.append(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(default))
            stmts.append(("move", sql.SQL(
                "WITH batch AS (DELETE FROM {d} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {d} WHERE {k} >= {lo} "
                "AND {k} < {hi} LIMIT {n})) RETURNING *) INSERT INTO {c} SELECT * FROM batch").format(
                d=default, k=key, lo=lo, hi=hi, n=sql.Literal(p["move_batch_size"]), c=child)))
        stmts.append(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            parent, child, lo, hi))
        stmts.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, check))
        return stmts

    def retire(self, plan, parent, names, default_name, pending=()):
        """Detach (then drop, keep or move) the partitions retention removes. Those in
        PENDING are detached by their FINALIZE step already; the rest of retention applies."""
        p = self.p
        if not names:
            return
        children = [qualified(p["schema"], name) for name in names]
        to_detach = [(name, child) for name, child in zip(names, children) if name not in pending]
        if to_detach and p["detach_concurrently"] and default_name is None:
            # DETACH CONCURRENTLY never takes ACCESS EXCLUSIVE on the parent, but cannot
            # run inside a transaction block: one step each.
            for name, child in to_detach:
                plan.steps.append(("detach-concurrently", name, [
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(parent, child)]))
        elif to_detach:
            # A plain DETACH takes ACCESS EXCLUSIVE on the parent: take it once for all of
            # them, so writers wait one short moment instead of once per partition.
            plan.steps.append(("detach", ", ".join(n for n, _c in to_detach), [
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, child) for _n, child in to_detach]))
        if p["retention_mode"] == "drop":
            # A detached table is no longer the parent's: dropping it never blocks writers.
            for name, child in zip(names, children):
                plan.steps.append(("drop", name, [sql.SQL("DROP TABLE {}").format(child)]))
            plan.dropped.extend(names)
        else:
            plan.detached.extend(names)
            if p["retention_mode"] == "move":
                archive = sql.Identifier(p["archive_schema"])
                plan.steps.append(("move", ", ".join(names), [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(archive)]
                                   + [sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(c, archive) for c in children]))

    # ---- applying it -----------------------------------------------------------------
    def run_step(self, kind, name, statements):
        p = self.p
        attempt = 0
        while True:
            attempt += 1
            recorded = len(self.session.queries)
            try:
                if kind == "detach-concurrently":
                    self.session.rollback()
                    self.session.conn.autocommit = True
                    self.session.fetch("SELECT set_config('lock_timeout', %s, false)", (p["lock_timeout"],))
                else:
                    self.session.fetch("SELECT set_config('lock_timeout', %s, true)", (p["lock_timeout"],))
                moved = 0
                for st in statements:
                    if isinstance(st, tuple):  # move rows out of DEFAULT in bounded batches
                        while True:
                            with self.session.conn.cursor() as cur:
                                if not moved:
                                    self.session.queries.append(st[1].as_string(self.session.conn) + "  -- repeated")
                                cur.execute(st[1])
                                moved += cur.rowcount
                                if cur.rowcount < p["move_batch_size"]:
                                    break
                    else:
                        self.session.execute(st)
                if not self.session.conn.autocommit:
                    self.session.commit()
                return moved
            except psycopg2.Error as e:
                if e.pgcode != LOCK_NOT_AVAILABLE:
                    raise
                if not self.session.conn.autocommit:
                    self.session.rollback()
                self.session.conn.autocommit = False
                if kind == "detach-concurrently" and self.detach_pending(name):
                    # Its first transaction committed and it timed out waiting for older
                    # snapshots: the same statement would now fail ("already pending detach").
                    # The statement ran; what is left is FINALIZE, under the same retries.
                    kind, statements = "finalize", [self.finalize_statement(name)]
                    self.finalized_during_run.append(name)
                    self.session.rollback()
                else:
                    del self.session.queries[recorded:]
                if attempt > p["lock_retries"]:
                    self.fail("gave up on %s %s after %d attempts: %s (lock_timeout %s). Steps before it were "
                              "applied; run again when the blocking transaction has ended%s"
                              % (kind, name, attempt, str(e).strip(), p["lock_timeout"],
                                 " (the next run finalizes the pending detach and applies retention)"
                                 if kind == "finalize" else ""))
                time.sleep(min(0.2 * 2 ** attempt, 5))
            finally:
                self.session.conn.autocommit = False

    @staticmethod
    def report(children, default):
        out = [dict(name=n, **{"from": str(r[0]), "to": str(r[1])}) for r, n in children]
        if default:
            out.append(dict(name=default, **{"from": "DEFAULT", "to": "DEFAULT"}))
        return out

    def run(self, check_mode):
        """Plan, apply unless CHECK_MODE, and return the module's result fields."""
        session = self.session
        try:
            plan = self.plan()
            before = self.before
            session.rollback()
            if check_mode:
                for step in plan.steps:
                    for st in step[2]:
                        st = st[1] if isinstance(st, tuple) else st
                        session.queries.append(st.as_string(session.conn))
                gone = set(plan.dropped) | set(plan.detached)
                new = [dict(name=n, **{"from": "(new)", "to": "(new)"}) for n in plan.created]
                after = [c for c in before if c["name"] not in gone] + new
            else:
                for kind, name, statements in plan.steps:
                    moved = self.run_step(kind, name, statements)
                    if moved:
                        plan.rows_moved[name] = moved
                after = self.report(*self.read_children()[:2])
            session.rollback()
        except psycopg2.Error as e:
            self.fail("%s.%s: %s" % (self.p["schema"], self.p["table"], str(e).strip()))
        return dict(
            changed=bool(plan.steps), created=plan.created, detached=plan.detached, dropped=plan.dropped,
            finalized=plan.finalized + self.finalized_during_run, warnings=plan.warnings,
            rows_moved=plan.rows_moved, partitions=after, queries=session.queries,
            diff=dict(before=dict(partitions=sorted(c["name"] for c in before)),
                      after=dict(partitions=sorted(c["name"] for c in after))),
        )
