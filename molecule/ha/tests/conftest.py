"""Fixtures for the HA scenario; the helpers live in molecule/shared/fleet.py."""

import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
from fleet import pg_cluster, assert_check_mode_clean, hosts_of, run_playbook, secret, wait_for  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

# The fleet's PostgreSQL as its hosts lay it out (the version their Debian release ships).
PG = pg_cluster(hosts_of("postgres")[0])

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
PATRONI_CONFIG = f"/etc/patroni/{PG['version']}-main.yml"
NETWORK = "pgfleet-mol-ha"


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def psql(host, sql, db="postgres"):
    """Run SQL as the postgres superuser over the local socket; return stripped output."""
    return host.check_output("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", db, sql)


def members(host):
    """patronictl list on HOST, as {member: {Role, State, TL, ...}}."""
    out = host.run("patronictl -c %s list -f json", PATRONI_CONFIG)
    if out.rc != 0:
        return {}
    return {m["Member"]: m for m in json.loads(out.stdout)}


def leader_name(host):
    leaders = [name for name, m in members(host).items() if m["Role"] == "Leader" and m["State"] == "running"]
    return leaders[0] if len(leaders) == 1 else None


class Probe:
    """A probe.py run in the background inside CONTAINER."""

    def __init__(self, container, *args, seconds=300):
        self.container = container
        self.log = f"/tmp/probe-{time.monotonic_ns()}.log"
        podman("cp", PROBE, f"{container}:/usr/local/bin/pgfleet-probe.py")
        user = ["--user", "postgres"] if args[0] == "local" else []
        podman("exec", "-d", *user, container, "python3", "/usr/local/bin/pgfleet-probe.py", *args, self.log, str(seconds))

    def stop(self):
        podman("exec", self.container, "touch", self.log + ".stop", check=False)
        time.sleep(0.5)

    def lines(self):
        """The log's lines; none yet while the detached probe has not created it (a loaded
        host can take a second or more to start it)."""
        out = podman("exec", self.container, "cat", self.log, check=False)
        if out.returncode != 0 and "No such file" not in out.stderr:
            raise RuntimeError(f"reading {self.log} in {self.container}: {out.stderr}")
        return out.stdout.splitlines()

    def acked(self):
        """[(id, time)] of the commits the server acknowledged."""
        return [(int(p[1]), float(p[2])) for p in (line.split() for line in self.lines()) if p[0] == "ok"]

    def ids(self):
        return [entry[0] for entry in self.acked()]

    def times(self):
        return [entry[1] for entry in self.acked()]

    def roles(self):
        return [(float(p[1]), p[2]) for p in (line.split() for line in self.lines()) if p[0] == "role"]


@pytest.fixture(scope="session")
def pg_hosts():
    return hosts_of("postgres")


@pytest.fixture(scope="session")
def router():
    (host,) = hosts_of("pgbouncer")
    return host


@pytest.fixture(scope="session")
def probe_table(pg_hosts):
    """The probe table on the current leader, writable by the service user."""
    by_name = {h.backend.name: h for h in pg_hosts}
    leader = by_name[leader_name(pg_hosts[0])]
    # Created as the owner role, as a migration would: its default privileges reach the service user.
    psql(leader, "SET ROLE orders_db_owner; CREATE TABLE IF NOT EXISTS ha_probe "
                 "(id bigint PRIMARY KEY, writer text, at timestamptz DEFAULT now())", db="orders_db")
    return "ha_probe"
