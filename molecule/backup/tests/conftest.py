"""Fixtures for the backup scenario; the helpers live in molecule/shared/fleet.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
from fleet import assert_check_mode_clean, hosts_of, pg_cluster, run_playbook, wait_for  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


@pytest.fixture(scope="session")
def primary():
    return hosts_of("postgres_primary")[0]


@pytest.fixture(scope="session")
def cluster(primary):
    return pg_cluster(primary)


@pytest.fixture(scope="session")
def replica():
    return hosts_of("postgres_replicas")[0]


@pytest.fixture(scope="session")
def repo():
    return hosts_of("pgbackrest_repo")[0]


def sql(host, query, db="postgres"):
    """One query as postgres over the local socket; the unaligned rows."""
    out = host.run("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d %s -c %s", db, query)
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def backrest(host, *args):
    return host.run("runuser -u postgres -- pgbackrest --stanza=main " + " ".join(args))
