"""The daily runner the postgresql_partitions role installs, run as its systemd unit would.

Laid out as the role lays it out (engine files + runner), run by Debian's python3 as the
postgres user against real clusters: it maintains the primary's tables and leaves a
standby alone.
"""

import json
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from pgcluster import PgCluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "postgresql_partitions")


def engine_files():
    """The module_utils files tasks/timer.yml installs beside the runner."""
    with open(os.path.join(ROLE, "tasks", "timer.yml")) as f:
        tasks = yaml.safe_load(f)
    return next(t["loop"] for t in tasks if "module_utils/{{ item }}" in str(t.get("ansible.builtin.copy", {}).get("src")))


@pytest.fixture(scope="module")
def lib_dir():
    lib = tempfile.mkdtemp(prefix="pgfleet-lib-", dir="/var/tmp")
    os.chmod(lib, 0o755)
    utils = os.path.join(lib, "ansible_collections", "pgfleet", "core", "plugins", "module_utils")
    os.makedirs(utils)
    for name in engine_files():
        shutil.copy(os.path.join(ROOT, "plugins", "module_utils", name), utils)
    shutil.copy(os.path.join(ROLE, "files", "pgfleet-partition-maintenance"), lib)
    for d, _subdirs, files in os.walk(lib):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o755)
    yield lib
    shutil.rmtree(lib)


def run_runner(lib, cluster, tables):
    config = os.path.join(cluster.base, "partitions.json")
    with open(config, "w", encoding="utf-8") as f:
        json.dump({"connection": {"login_unix_socket": cluster.socket_dir, "login_port": cluster.port},
                   "tables": tables}, f)
    os.chmod(config, 0o644)
    return subprocess.run(["runuser", "-u", "postgres", "--", "env", f"PGFLEET_LIB={lib}", "/usr/bin/python3",
                           os.path.join(lib, "pgfleet-partition-maintenance"), config],
                          capture_output=True, text=True, timeout=120, check=False)


def test_runner_maintains_the_primary_and_reports_failures(lib_dir, pg):
    pg.query("CREATE TABLE messages (created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)")
    tables = [{"db": "postgres", "table": "messages", "interval": "month", "premake": 2, "default_partition": True},
              {"db": "postgres", "table": "no_such_table", "interval": "month"}]
    proc = run_runner(lib_dir, pg, tables)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["table"] == "postgres:public.messages" and len(lines[0]["created"]) == 4
    assert "public.no_such_table does not exist" in proc.stderr
    assert pg.query("SELECT count(*) FROM pg_inherits") == [(4,)]
    again = run_runner(lib_dir, pg, tables[:1])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] == []


def test_runner_does_nothing_on_a_standby(lib_dir, pg):
    pg.query("CREATE TABLE messages (created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)")

    standby = PgCluster()
    try:
        standby.init_standby_of(pg).start()
        proc = run_runner(lib_dir, standby, [{"db": "postgres", "table": "messages", "interval": "month"}])
        assert proc.returncode == 0, proc.stderr
        assert "standby" in json.loads(proc.stdout)["skipped"]
        assert standby.query("SELECT pg_is_in_recovery()") == [(True,)]
    finally:
        standby.destroy()
    assert pg.query("SELECT count(*) FROM pg_inherits") == [(0,)]
