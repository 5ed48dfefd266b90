"""Fixtures that reach the converged fleet through Molecule's own inventory."""

import json
import os
import subprocess
import time

import pytest
import testinfra

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE")
SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))


def hosts_of(group):
    hosts = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=INVENTORY)
    assert hosts, f"the inventory has no host in group {group}"
    return hosts


def psql(host, sql, db="postgres"):
    """Run SQL as the postgres superuser over the local socket; return stripped output."""
    return host.check_output("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", db, sql)


def wait_for(predicate, timeout=30.0, step=0.5):
    """Poll PREDICATE until it returns a truthy value or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture(scope="session")
def primary():
    (host,) = hosts_of("postgres_primary")
    return host


@pytest.fixture(scope="session")
def replicas():
    return hosts_of("postgres_replicas")


def converge(*args):
    """Run the scenario's converge playbook (site.yml); return its JSON report."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, os.path.join(SCENARIO, "converge.yml"), *args],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout)


def changed_tasks(report):
    return [f"{host}: {task['task']['name']}"
            for play in report["plays"] for task in play["tasks"]
            for host, result in task["hosts"].items() if result.get("changed")]


def adhoc(pattern, module, args):
    """Run one module on PATTERN as root, the way an operator would; return {host: result}."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible", "-i", INVENTORY, pattern, "-b", "-m", module, "-a", json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)
    return report["plays"][0]["tasks"][0]["hosts"]
