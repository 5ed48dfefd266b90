# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The modules that change a target: --check predicts, --diff shows before and after.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Runs in check mode, reporting what it would change without changing it.
    support: full
  diff_mode:
    description: Returns the state before and after (or as predicted in check mode) with --diff, and only then.
    support: full
  platform:
    description: Runs on the managed host, against the server there (Debian 12 and 13).
    support: full
    platforms: posix
"""

    # Read-only modules.
    INFO = r"""
attributes:
  check_mode:
    description: Reads only, so it runs the same in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so there is no difference to show.
    support: N/A
  platform:
    description: Runs on the managed host, against the server there (Debian 12 and 13).
    support: full
    platforms: posix
"""
