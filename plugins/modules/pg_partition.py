#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_partition
short_description: Keep the range partitions of a partitioned table ahead of time and within retention
version_added: 0.1.0
description:
  - Manages the children of a natively RANGE-partitioned table on one column (the parent
    comes from the application's schema). No extension is needed.
  - Keeps I(premake) future partitions ahead of the current time whether or not data has arrived,
    fills gaps back to the oldest partition or to I(start), applies I(retention), and
    optionally keeps a DEFAULT partition, moving the rows it holds into a partition as
    soon as one exists for their range.
  - Lock-friendly. A new partition is created as a standalone table with a CHECK
    constraint matching its bounds, then attached, which takes SHARE UPDATE EXCLUSIVE on
    the parent instead of the ACCESS EXCLUSIVE of C(CREATE TABLE ... PARTITION OF).
    Old partitions are detached with C(DETACH PARTITION CONCURRENTLY) where PostgreSQL
    allows it (no DEFAULT partition). Each step runs under I(lock_timeout) and is retried
    I(lock_retries) times, so the module never queues behind a long transaction and
    stalls traffic.
  - Each step is its own short transaction. All input is checked, and every planned
    partition compared with the existing ones, before the first change.
  - 'How long writers can stall: a step that needs ACCESS EXCLUSIVE on the parent (the plain
    C(DETACH PARTITION) used when a DEFAULT partition exists or I(detach_concurrently=false))
    queues in front of new writers while it waits for its lock, so writers can stall for up
    to I(lock_timeout) per attempt, I(lock_timeout) x (1 + I(lock_retries)) in total
    (C(2s) x 6 = 12 s with the defaults) plus the pauses between attempts (0.4 s doubling,
    at most 5 s each). Steps that take only SHARE UPDATE EXCLUSIVE (ATTACH, C(DETACH ...
    CONCURRENTLY), C(FINALIZE)) never block plain reads and writes.'
  - An interrupted C(DETACH PARTITION ... CONCURRENTLY) (a timeout while it waited for older
    transactions, a cancelled session) leaves the partition pending detach. The module
    recognises it, on the same attempt or on a later run, completes it with
    C(DETACH PARTITION ... FINALIZE) under the same I(lock_timeout) and retries, and then
    applies I(retention_mode) to it in the same run. Check mode lists the C(FINALIZE).
  - Identifier options are refused before any SQL when empty, holding a NUL byte, or longer
    than PostgreSQL's 63 bytes (the server would truncate them and act on another name); the
    derived partition, DEFAULT partition and constraint names are checked the same way.
  - 'Partition names: C(<table>_pYYYYMMDD) (day), C(<table>_pYYYYwWW) (ISO week),
    C(<table>_pYYYYMM) (month), C(<table>_pYYYYqN) (quarter), C(<table>_pYYYY) (year),
    C(<table>_p<lower bound>) (integer; C(pm<n>) for a negative bound), C(<table>_default).'
extends_documentation_fragment:
  - pgfleet.core.postgres
  - pgfleet.core.attributes
options:
  table:
    description: The partitioned (parent) table, unqualified.
    type: str
    required: true
  schema:
    description: Its schema; new partitions are created there too.
    type: str
    default: public
  interval:
    description:
      - Width of a partition. C(day) to C(year) for a C(date), C(timestamp) or
        C(timestamptz) key (periods in UTC); C(integer) with I(step) for a
        C(smallint), C(integer) or C(bigint) key.
    type: str
    required: true
    choices: [day, week, month, quarter, year, integer]
  step:
    description: Width of an integer partition; required with I(interval=integer).
    type: int
  premake:
    description:
      - Partitions to keep after the current one. For an integer key the current one
        holds the largest key in the table.
    type: int
    default: 4
  start:
    description:
      - Back-fill partitions from the one holding this value (a date or timestamp, or an
        integer). Without it, partitions start at the oldest existing one, or the current one.
    type: str
  retention:
    description:
      - How much to keep. A PostgreSQL interval (C(90 days), C(12 months)) removes the
        partitions whose whole range is older than the current time minus it; a whole number
        keeps that many partitions up to and including the current one (future ones are
        not counted). The newest partition is never removed, nor the DEFAULT one.
    type: str
  retention_mode:
    description:
      - C(drop) detaches and drops; C(detach) leaves the table standalone; C(move)
        detaches and moves it to I(archive_schema).
    type: str
    choices: [drop, detach, move]
    default: drop
  archive_schema:
    description: Schema that I(retention_mode=move) moves old partitions to (created if missing).
    type: str
  default_partition:
    description:
      - Keep a DEFAULT partition C(<table>_default) for rows no partition takes. An
        existing DEFAULT partition is never removed by this module.
    type: bool
    default: false
  move_batch_size:
    description: Rows moved out of the DEFAULT partition per statement.
    type: int
    default: 10000
  lock_timeout:
    description: PostgreSQL lock_timeout for each step, e.g. C(2s) or C(500ms).
    type: str
    default: 2s
  lock_retries:
    description: Times a step that timed out waiting for a lock is tried again.
    type: int
    default: 5
  detach_concurrently:
    description: Use C(DETACH PARTITION ... CONCURRENTLY) when no DEFAULT partition exists.
    type: bool
    default: true
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Monthly partitions of messages, 4 ahead, 12 months kept
  pgfleet.core.pg_partition:
    login_db: chat_db
    table: messages
    interval: month
    premake: 4
    retention: 12 months
    retention_mode: detach
    default_partition: true

- name: Integer ranges of one million ids
  pgfleet.core.pg_partition:
    login_db: app_db
    table: events
    interval: integer
    step: 1000000
"""

RETURN = r"""
created:
  description: Partitions created (or that would be, in check mode), oldest first.
  returned: always
  type: list
  elements: str
  sample: [messages_p202612, messages_p202701]
detached:
  description: Partitions detached and kept (retention_mode detach or move).
  returned: always
  type: list
  elements: str
dropped:
  description: Partitions dropped (retention_mode drop).
  returned: always
  type: list
  elements: str
finalized:
  description: Partitions whose interrupted C(DETACH ... CONCURRENTLY) was completed with C(FINALIZE).
  returned: always
  type: list
  elements: str
rows_moved:
  description: Rows moved from the DEFAULT partition, per partition.
  returned: always
  type: dict
  sample: {messages_p202612: 42}
partitions:
  description: The partitions after the run, oldest first, with their bounds.
  returned: always
  type: list
  elements: dict
  sample: [{name: messages_p202612, from: '2026-12-01 00:00:00+00', to: '2027-01-01 00:00:00+00'}]
queries:
  description: The statements that were run (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.guard import run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.partitioner import Partitioner
from ansible_collections.pgfleet.core.plugins.module_utils.postgres import Session, postgres_argument_spec


def main():
    spec = postgres_argument_spec()
    spec.update(
        table=dict(type="str", required=True),
        schema=dict(type="str", default="public"),
        interval=dict(type="str", required=True, choices=["day", "week", "month", "quarter", "year", "integer"]),
        step=dict(type="int"),
        premake=dict(type="int", default=4),
        start=dict(type="str"),
        retention=dict(type="str"),
        retention_mode=dict(type="str", choices=["drop", "detach", "move"], default="drop"),
        archive_schema=dict(type="str"),
        default_partition=dict(type="bool", default=False),
        move_batch_size=dict(type="int", default=10000),
        lock_timeout=dict(type="str", default="2s"),
        lock_retries=dict(type="int", default=5),
        detach_concurrently=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    state = {}

    def body():
        session = state["session"] = Session.for_module(module)
        try:
            result = Partitioner(module.params, session).run(module.check_mode)
        finally:
            session.close()
        for warning in result.pop("warnings"):
            module.warn(warning)
        if not module._diff:
            result.pop("diff")
        module.exit_json(**result)

    run_guarded(module, body, lambda: dict(queries=state["session"].queries) if "session" in state else {})


if __name__ == "__main__":
    main()
