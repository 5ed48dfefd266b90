"""pgfleet.core.await_job waits for an async job and prints a progress line while it runs:
the jobs here are real shell commands on this machine (connection local), with Ansible's
JSON callback on standard output as the Molecule tests and AWX read it."""

import json
import os
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
  tasks:
    - name: Start the job
      ansible.builtin.shell: "{{{{ job }}}}"
      async: 600
      poll: 0
      register: started

    - name: Wait for the job
      pgfleet.core.await_job:
        job: "{{{{ await_with | default(started) }}}}"
        probe: "{{{{ probe }}}}"
        label: the test job
        interval: 1
        timeout: "{{{{ timeout | default(60) }}}}"
      register: awaited
"""


def run(tmp_path, **extra):
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(PLAYBOOK.format(python=sys.executable)))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    args = [a for key, value in extra.items() for a in ("-e", json.dumps({key: value}))]
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(path), *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)  # the progress lines never break the JSON on standard output
    tasks = {task["task"]["name"]: task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]}
    return proc.returncode, tasks.get("Wait for the job"), proc.stderr


def test_progress_lines_while_the_job_runs_then_its_own_result(tmp_path):
    marker = tmp_path / "steps"
    rc, result, stderr = run(tmp_path, job=f"for i in 1 2 3 4; do echo $i >> {marker}; sleep 1; done; echo copied",
                             probe=f"echo noise; echo step $(tail -n 1 {marker})")
    assert rc == 0, stderr
    lines = [line for line in stderr.splitlines() if "[localhost] the test job: " in line]
    assert lines[0].startswith("  [localhost] the test job: waiting for async job "), stderr
    lines = lines[1:]
    assert len(lines) >= 2, stderr
    assert all("noise" not in line for line in lines) and any("step " in line for line in lines), lines
    assert result["rc"] == 0 and result["stdout"] == "copied" and result["changed"] is True, result
    assert result["elapsed"] >= 3 and "ansible_job_id" not in result, result


def test_a_failed_job_fails_the_wait_with_its_exit_code(tmp_path):
    rc, result, stderr = run(tmp_path, job="echo partial; sleep 1; echo broken >&2; exit 3", probe="false")
    assert rc != 0, stderr
    assert result["failed"] is True and result["rc"] == 3 and result["stderr"] == "broken", result
    # a probe that fails shows 'running', not its error
    assert all(line.endswith(" s)") and ": running (" in line
               for line in stderr.splitlines() if "the test job" in line and "waiting for async job" not in line), stderr


def test_a_job_past_its_timeout_fails_the_wait_and_names_the_job(tmp_path):
    marker = tmp_path / "still-running"
    rc, result, stderr = run(tmp_path, job=f"sleep 4; touch {marker}", probe="echo waiting", timeout=2)
    assert rc != 0, stderr
    assert result["failed"] is True and "the test job still runs after the timeout of 2 s (async job" in result["msg"], result
    # left running, as the message says: it finishes on its own
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists()


def test_a_result_without_a_job_id_is_refused_with_what_to_do(tmp_path):
    rc, result, stderr = run(tmp_path, job="true", probe="true", await_with={"changed": True})
    assert rc != 0, stderr
    assert result["failed"] is True and "register the task that starts it with async and poll: 0" in result["msg"], result
