"""Fixtures that reach the converged fleet through Molecule's own inventory."""

import os
import time

import pytest
import testinfra

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE")


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
