"""Fixtures for the default scenario; the helpers live in molecule/shared/fleet.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
from fleet import pg_cluster, adhoc, assert_check_mode_clean, changed_tasks, converge, hosts_of, inventory_with, podman_hosts, run_playbook, secret, wait_for  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

# The fleet's PostgreSQL as its hosts lay it out (the version their Debian release ships).
PG = pg_cluster(hosts_of("postgres")[0])


def psql(host, sql, db="postgres"):
    """Run SQL as the postgres superuser over the local socket; return stripped output."""
    return host.check_output("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", db, sql)


@pytest.fixture(scope="session")
def primary():
    (host,) = hosts_of("postgres_primary")
    return host


@pytest.fixture(scope="session")
def replicas():
    return hosts_of("postgres_replicas")


def pytest_collection_modifyitems(items):
    """test_failover.py makes another host the primary: it runs after every other test."""
    items.sort(key=lambda item: item.path.name == "test_failover.py")
