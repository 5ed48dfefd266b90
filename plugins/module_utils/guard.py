# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error path of every pgfleet module: helpers raise ModuleFailure, and
run_guarded, the last line of each module's main(), turns it into fail_json.

No Ansible import: the host-side partition runner imports it too."""

from __future__ import annotations

import traceback


class ModuleFailure(Exception):
    """A failure the module reports on purpose: MSG, and DETAILS returned beside it
    (queries or commands already run, a remedy, an exception text)."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def _context(context):
    if context is None:
        return {}
    try:
        return context() or {}
    except Exception:  # noqa: BLE001 - the original error matters more
        return {}


def run_guarded(module, body, context=None):
    """Run BODY(), which ends in exit_json; a ModuleFailure becomes fail_json.

    Any other exception is a bug: it becomes fail_json with its traceback too, instead of
    leaving ansible-playbook with no result at all ("MODULE FAILURE"). CONTEXT() may add
    what was already run (queries, commands) to either.
    """
    try:
        body()
    except ModuleFailure as e:
        module.fail_json(msg=e.msg, **dict(_context(context), **e.details))
    except Exception as e:  # noqa: BLE001 - the point is to catch what nobody expected
        module.fail_json(msg="%s: unexpected error (%s): %s" % (module._name.split(".")[-1], type(e).__name__, e),
                         exception=traceback.format_exc(), **_context(context))
