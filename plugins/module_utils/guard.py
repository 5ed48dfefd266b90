# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The last line of every pgfleet module: it always answers Ansible with JSON."""

from __future__ import annotations

import traceback


def run_guarded(module, body, context=None):
    """Run BODY(); an exception it did not expect becomes fail_json with its traceback.

    Expected failures end in fail_json inside BODY (SystemExit passes through). Without
    this, an uncaught exception leaves ansible-playbook with no result at all ("MODULE
    FAILURE", exit 1). CONTEXT() may add what was already run (queries, commands).
    """
    try:
        body()
    except Exception as e:  # noqa: BLE001 - the point is to catch what nobody expected
        extra = {}
        if context is not None:
            try:
                extra = context() or {}
            except Exception:  # noqa: BLE001 - the original error matters more
                extra = {}
        module.fail_json(msg="%s: unexpected error (%s): %s" % (module._name.split(".")[-1], type(e).__name__, e),
                         exception=traceback.format_exc(), **extra)
