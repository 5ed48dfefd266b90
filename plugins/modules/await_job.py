#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: await_job
short_description: Wait for an async job and show its progress while it runs
version_added: 0.2.0
description:
  - "Waits for a job started with C(async) and C(poll: 0) (a clone, a restore, a backup) and
    prints one line per O(interval) while it runs - the last line a O(probe) command prints
    on the host (bytes copied, percent done), and the seconds since the wait began - so a long
    step is not silent until it ends. Ansible's own C(poll) shows nothing until the end."
  - Returns the job's own result (its C(rc), C(stdout), C(changed), C(failed)), and removes
    the job's status file.
  - An action plugin on the controller; the progress lines go to standard error, so a JSON
    callback on standard output stays parseable.
options:
  job:
    description: "The registered result of the task started with C(async) and C(poll: 0)."
    type: dict
    required: true
  probe:
    description:
      - A shell command run on the host (with the task's become) each O(interval); its last
        non-empty output line is shown. Without it, or when it fails, the line says C(running).
    type: str
  label:
    description: What the progress lines call the job; the task's name by default.
    type: str
  interval:
    description: Seconds between two checks and progress lines.
    type: int
    default: 10
  timeout:
    description:
      - Seconds to wait. A job still running then fails the task (the job itself is left
        running; the message names its id).
    type: int
    default: 86400
attributes:
  check_mode:
    description: The job it waits for only runs in a real run; the task fails in check mode, so skip it there.
    support: none
  diff_mode:
    description: Changes nothing of its own.
    support: N/A
  platform:
    description: Runs on the controller and asks the managed host.
    support: full
    platforms: posix
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Restore (in the background)
  ansible.builtin.command: pgbackrest --stanza=main --delta restore
  async: 86400
  poll: 0
  register: restore_job

- name: Wait for the restore (the data directory's size every 10 s)
  pgfleet.core.await_job:
    job: "{{ restore_job }}"
    probe: du -sh {{ pg_data_dir }}
    label: pgBackRest restore
  register: restored
"""

RETURN = r"""
elapsed:
  description: Seconds the wait took.
  returned: always
  type: int
rc:
  description: The job's exit code, when its module returns one.
  returned: when the job's module returns it
  type: int
"""
