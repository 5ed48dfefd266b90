# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async job and print a progress line while it runs (see modules/await_job.py)."""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):
    _supports_check_mode = False  # the job it waits for runs only in a real run
    _requires_connection = True

    ARGS = dict(
        job=dict(type="dict", required=True),
        probe=dict(type="str"),
        label=dict(type="str"),
        interval=dict(type="int", default=10),
        timeout=dict(type="int", default=86400),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validated, args = self.validate_argument_spec(argument_spec=self.ARGS)
        jid = args["job"].get("ansible_job_id")
        if not jid:
            return dict(result, failed=True,
                        msg="job has no ansible_job_id: register the task that starts it with async and poll: 0")
        if args["interval"] < 1 or args["timeout"] < 1:
            return dict(result, failed=True, msg="interval (%s) and timeout (%s) must be at least 1"
                        % (args["interval"], args["timeout"]))
        host = task_vars.get("inventory_hostname", "?")
        label = args["label"] or self._task.get_name()
        status_args = dict(jid=jid, _async_dir=self.get_shell_option("async_dir", default="~/.ansible_async"))
        start = time.monotonic()
        # A first line at once, so even a job that ends before the first check says it ran here.
        display.display("  [%s] %s: waiting for async job %s" % (host, label, jid), stderr=True)
        while True:
            status = self._execute_module(module_name="ansible.builtin.async_status",
                                          module_args=dict(status_args, mode="status"), task_vars=task_vars)
            if status.get("finished") or status.get("failed") and "finished" not in status:
                break
            elapsed = int(time.monotonic() - start)
            if elapsed >= args["timeout"]:
                return dict(result, failed=True, ansible_job_id=jid,
                            msg="%s still runs after the timeout of %d s (async job %s on %s); it was left running"
                            % (label, args["timeout"], jid, host))
            display.display("  [%s] %s: %s (%d s)" % (host, label, self._probe(args["probe"]), elapsed), stderr=True)
            time.sleep(args["interval"])
        self._execute_module(module_name="ansible.builtin.async_status",
                             module_args=dict(status_args, mode="cleanup"), task_vars=task_vars)
        for key in ("ansible_job_id", "started", "finished", "results_file", "_ansible_suppress_tmpdir_delete"):
            status.pop(key, None)
        status["elapsed"] = int(time.monotonic() - start)
        return dict(result, **status)

    def _probe(self, command):
        """The last line PROBE printed on the host, or 'running' without one."""
        if not command:
            return "running"
        out = self._low_level_execute_command(command, sudoable=True)
        lines = [line for line in (out.get("stdout") or "").splitlines() if line.strip()]
        if out.get("rc") != 0 or not lines:
            return "running"
        return lines[-1].strip()
