"""postgresql_primary's service databases, users, grants and PgBouncer lookup function
against a real PostgreSQL 15 on this host: a converged primary is read once per user and
database (the grants and the lookup function's schema and privileges are skipped), and any
privilege taken away since is found and granted again; --check reports it first and changes
nothing."""

import json
import os
import subprocess
import textwrap

import pytest
import yaml

from pgcluster import PgCluster

PLAYBOOK = """
- name: The primary role's databases, users and lookup function, as site.yml runs them
  hosts: postgres
  gather_facts: false
  module_defaults:
    group/community.postgresql.all:
      login_unix_socket: "{{ pg_socket_dir }}"
      login_port: "{{ pg_port }}"
  tasks:
    - name: Read the present secrets
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: secrets}
    - name: Databases and users
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: databases}
    - name: The lookup function
      ansible.builtin.include_role: {name: pgfleet.core.postgresql_primary, tasks_from: pgbouncer}
"""

DRIFT = {  # a privilege taken away on a converged primary, and how to see it is back
    "table": ("REVOKE UPDATE ON orders FROM app",
              "SELECT has_table_privilege('app', 'orders', 'UPDATE')"),
    "sequence": ("REVOKE USAGE ON SEQUENCE orders_id_seq FROM app",
                 "SELECT has_sequence_privilege('app', 'orders_id_seq', 'USAGE')"),
    "default privileges": ("ALTER DEFAULT PRIVILEGES FOR ROLE shop_owner IN SCHEMA public REVOKE INSERT ON TABLES FROM app",
                           "SELECT count(*) = 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclobjtype = 'r' "
                           "AND a.grantee = 'app'::regrole AND a.privilege_type = 'INSERT'"),
    "lookup to PUBLIC": ("GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO PUBLIC",
                         "SELECT NOT EXISTS (SELECT FROM pg_proc p, aclexplode(p.proacl) a WHERE p.proname = 'get_auth' "
                         "AND a.grantee = 0)"),
    "database closed to PUBLIC": ("GRANT CONNECT ON DATABASE shop TO PUBLIC",
                                  "SELECT NOT EXISTS (SELECT FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = 'shop' "
                                  "AND a.grantee = 0)"),
    "lookup user's schema": ("REVOKE USAGE ON SCHEMA pgbouncer FROM pgbouncer_auth",
                             "SELECT has_schema_privilege('pgbouncer_auth', 'pgbouncer', 'USAGE')"),
}


@pytest.fixture(scope="module")
def primary(tmp_path_factory):
    cluster = PgCluster().init().start()
    try:
        work = tmp_path_factory.mktemp("grants")
        host = dict(ansible_connection="local", ansible_python_interpreter="/usr/bin/python3", ansible_become_method="su",
                    pg_socket_dir=cluster.socket_dir, pg_port=cluster.port,
                    pg_databases=[{"name": "shop"}],
                    pg_users=[{"name": "app", "password": "app-Pa55-word", "databases": ["shop"]}],
                    pg_pgbouncer_auth_password="lookup-Pa55-word")
        (work / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"postgres": {"hosts": {"pg": host}}}}}))
        (work / "play.yml").write_text(textwrap.dedent(PLAYBOOK))
        yield cluster, work
    finally:
        cluster.destroy()


def run(work, *args):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", str(work / "hosts.yml"), str(work / "play.yml"), *args],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    leaks = [t["task"]["name"] for p in json.loads(proc.stdout)["plays"] for t in p["tasks"] if "Pa55-word" in json.dumps(t)]
    assert "Pa55-word" not in proc.stdout + proc.stderr, leaks  # no_log holds
    return json.loads(proc.stdout)


def ran(report, suffix):
    """How many hosts (loop items counted) ran the task whose name ends with SUFFIX."""
    return sum(len([r for r in h.get("results", [h]) if not r.get("skipped")])
               for p in report["plays"] for t in p["tasks"] if t["task"]["name"].endswith(suffix)
               for h in t["hosts"].values() if not h.get("skipped"))


def test_a_converged_primary_is_read_once_and_taken_privileges_come_back(primary):
    cluster, work = primary
    first = run(work)
    assert first["stats"]["pg"]["changed"] > 0
    assert ran(first, "Grant the user its privileges on the database") == 6
    cluster.query("SET ROLE shop_owner; CREATE TABLE orders (id serial PRIMARY KEY, note text)", dbname="shop")
    again = run(work)
    # The owner's default privileges covered the new table: nothing to grant, nothing run.
    assert again["stats"]["pg"]["changed"] == 0, again["stats"]
    assert ran(again, "Grant the user its privileges on the database") == 0
    assert ran(again, "Let only the lookup user call it in shop") == 0
    assert ran(again, "Create the pgbouncer schema in shop") == 0
    assert ran(again, "Create the databases") == 0 and ran(again, "Allow no one to connect unless granted") == 0

    # --check sees them all and changes nothing.
    for revoke, present in DRIFT.values():
        cluster.query(revoke, dbname="shop")
    check = run(work, "--check")
    assert check["stats"]["pg"]["changed"] > 0
    assert [n for n, (_, present) in DRIFT.items() if cluster.query(present, dbname="shop") != [(False,)]] == []
    assert run(work)["stats"]["pg"]["changed"] > 0
    assert [n for n, (_, present) in DRIFT.items() if cluster.query(present, dbname="shop") != [(True,)]] == []
    # Each one alone in its read is found too (one read covers several privileges: none may
    # hide behind another). A run takes one privilege from each of the three reads at most
    # (the grants', the lookup function's, the databases'): each read gates its own tasks, so
    # a privilege its read missed would stay away whatever the other reads found.
    for together in (["table", "lookup to PUBLIC", "database closed to PUBLIC"],
                     ["sequence", "lookup user's schema"], ["default privileges"]):
        for name in together:
            cluster.query(DRIFT[name][0], dbname="shop")
        assert run(work)["stats"]["pg"]["changed"] > 0, together
        assert [n for n in together if cluster.query(DRIFT[n][1], dbname="shop") != [(True,)]] == []
    assert run(work)["stats"]["pg"]["changed"] == 0
