# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shell probe that tells how far a running pgBackRest command is, from its detail log."""

from __future__ import annotations

import shlex

DOCUMENTATION = r"""
name: pgbackrest_progress
short_description: A probe for pgfleet.core.await_job that reads a running pgBackRest command's progress
version_added: 0.3.0
description:
  - Returns a shell command that prints the share of the work done by the pgBackRest command
    logging to O(_input), followed by O(done) (for example C(41.83% restored)), or C(starting)
    before its first file. It reads the percent pgBackRest's detail log gives after each file,
    counting only lines after the log's last C(PROCESS START), so an earlier run's figures are
    never shown.
  - Needs C(log-level-file=detail) (pgfleet's pgbackrest role sets it).
options:
  _input:
    description: The command's log file, e.g. C(/var/log/pgbackrest/main-backup.log).
    type: path
    required: true
  done:
    description: The word printed after the percent.
    type: str
    default: done
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Wait for the restore
  pgfleet.core.await_job:
    job: "{{ restore_job }}"
    probe: "{{ '/var/log/pgbackrest/main-restore.log' | pgfleet.core.pgbackrest_progress('restored') }}"
    label: pgBackRest restore
"""

RETURN = r"""
_value:
  description: The shell command (the log file quoted).
  type: str
"""

# The last "(NN.NN%)" of a file line since the newest PROCESS START; 500 lines are plenty:
# pgBackRest writes one line per file copied.
_AWK = ("/PROCESS START/ {p = \"\"} match($0, /[0-9.]+%%\\)/) {p = substr($0, RSTART, RLENGTH - 1)} "
        "END {print p ? p \" %s\" : \"starting\"}")


def pgbackrest_progress(log_file, done="done"):
    return "tail -n 500 %s | awk %s" % (shlex.quote(str(log_file)), shlex.quote(_AWK % str(done).replace('"', "")))


class FilterModule:
    def filters(self):
        return {"pgbackrest_progress": pgbackrest_progress}
