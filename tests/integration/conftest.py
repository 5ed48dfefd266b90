import pytest

from pgcluster import PgCluster


@pytest.fixture
def pg_factory():
    """Start as many throwaway clusters as a test needs; all are removed afterwards."""
    clusters = []

    def make(**kw):
        cluster = PgCluster(**kw)
        clusters.append(cluster)  # removed afterwards even if it fails to start
        return cluster.init().start()

    yield make
    for cluster in clusters:
        cluster.destroy()


@pytest.fixture
def pg(pg_factory):
    return pg_factory()


@pytest.fixture(scope="module")
def pg_module():
    """One cluster shared by the tests of a module (for many small cases, e.g. hypothesis)."""
    cluster = PgCluster()
    try:
        yield cluster.init().start()
    finally:
        cluster.destroy()
