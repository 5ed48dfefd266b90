"""Run a pgfleet module in-process, the way Ansible would, and return its result.

The module talks to a real server; only Ansible's process boundary is skipped, which
keeps property tests with many examples fast. tests/integration/test_ansible_e2e.py
runs the same modules through ansible-playbook.
"""

import importlib
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class _Exit(BaseException):  # like Ansible's SystemExit: no module's `except Exception` may swallow it
    def __init__(self, result):
        super().__init__(result)
        self.result = result


_WARNINGS = []  # what the module running now passed to module.warn()


def _warnings():
    return list(_WARNINGS)


def _warn(self, warning, **kwargs):
    # AnsibleModule.warn() sends warnings to the controller's display once a controller
    # module was imported in this process (other tests do); collect them here instead.
    _WARNINGS.append(warning)


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    kwargs["warnings"] = _warnings()
    raise _Exit(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs.update(failed=True, msg=msg, warnings=_warnings())
    raise _Exit(kwargs)


def run_module(name, args, check=False, diff=True):
    module = importlib.import_module(f"ansible_collections.pgfleet.core.plugins.modules.{name}")
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    _WARNINGS.clear()  # a module's warnings are its own run's, as in Ansible
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", _warn):
        try:
            module.main()
        except _Exit as e:
            return e.result
    raise AssertionError(f"{name} returned without exit_json or fail_json")


def conn_args(cluster, db="postgres"):
    return dict(login_unix_socket=cluster.socket_dir, login_port=cluster.port, login_db=db)
