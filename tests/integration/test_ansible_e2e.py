"""The modules through ansible-playbook itself: packaging, action group, check, diff."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEADER = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
  module_defaults:
    group/pgfleet.core.postgres:
      login_unix_socket: {socket}
      login_port: {port}
      login_db: postgres
"""

PLAYBOOK = HEADER + """
  tasks:
    - name: Partitions of messages
      pgfleet.core.pg_partition:
        table: messages
        interval: month
        premake: 2
        default_partition: true
    - name: Tenant isolation on documents
      pgfleet.core.pg_rls_policy:
        table: documents
        rls: forced
        policies:
          - name: tenant_isolation
            using: tenant_id = current_setting('app.tenant_id')::int
"""


@pytest.fixture
def playbook(pg, tmp_path):
    pg.query("CREATE TABLE messages (created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);"
             "CREATE TABLE documents (tenant_id int)")
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(PLAYBOOK.format(python=sys.executable, socket=pg.socket_dir, port=pg.port)))
    return path


def play(path, *extra):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(path), *extra],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    results = [t["hosts"]["localhost"] for p in report["plays"] for t in p["tasks"]]
    return report["stats"]["localhost"], results


def test_check_then_apply_then_nothing_to_do(pg, playbook):
    stats, results = play(playbook, "--check", "--diff")
    assert stats["changed"] == 2 and stats["failures"] == 0
    assert results[0]["created"] and "diff" in results[0]
    assert pg.query("SELECT count(*) FROM pg_inherits") == [(0,)]
    assert pg.query("SELECT count(*) FROM pg_policy") == [(0,)]

    stats, results = play(playbook)
    assert stats["changed"] == 2
    assert pg.query("SELECT count(*) FROM pg_inherits") == [(4,)]  # default + current + 2 ahead
    assert pg.query("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'documents'") == [(True,)]

    stats = play(playbook)[0]
    assert stats["changed"] == 0 and stats["ok"] == 2
    stats = play(playbook, "--check", "--diff")[0]
    assert stats["changed"] == 0


FAILURES = HEADER + """
  tasks:
    - name: A '%' in the table name, with a DEFAULT partition
      pgfleet.core.pg_partition:
        table: 100%_orders
        interval: month
        premake: "{{{{ item }}}}"
        default_partition: true
      loop: [1, 3]
    - name: A bound the engine does not model (infinity)
      pgfleet.core.pg_partition:
        table: odd
        interval: month
      ignore_errors: true
"""


def test_every_result_is_json_through_ansible_playbook(pg, tmp_path):
    """Issue 19: a '%' in a name crashed the module ("MODULE FAILURE", no JSON); an unexpected
    error must come back as a failed result with its traceback, never as no result."""
    pg.query('CREATE TABLE "100%_orders" (at timestamptz NOT NULL) PARTITION BY RANGE (at);'
             "CREATE TABLE odd (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
             "CREATE TABLE odd_end PARTITION OF odd FOR VALUES FROM ('2100-01-01') TO ('infinity')")
    path = tmp_path / "failures.yml"
    path.write_text(textwrap.dedent(FAILURES.format(python=sys.executable, socket=pg.socket_dir, port=pg.port)))
    stats, results = play(path)
    loop = results[0]["results"]
    assert [r["changed"] for r in loop] == [True, True] and not any(r.get("failed") for r in loop)
    assert "100%_orders_default" in loop[0]["created"] and len(loop[1]["created"]) == 2
    odd = results[1]
    assert odd["failed"] and "unexpected error" in odd["msg"] and "infinity" in odd["msg"], odd
    # ansible-core 2.19 shows the module's traceback only when asked (ANSIBLE_DISPLAY_TRACEBACK).
    assert "exception" in odd and "MODULE FAILURE" not in odd["msg"]
    assert stats["failures"] == 0 and stats["ignored"] == 1
