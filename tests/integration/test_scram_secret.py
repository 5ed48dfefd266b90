"""The SCRAM secrets the scram_secret filter computes, judged by a real server: a secret the
server made is recognised, and a secret the filter made lets the password log in over TCP."""

import psycopg2
from psycopg2 import sql
import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.pgfleet.core.plugins.filter.scram_secret import matches, scram_secret

# ASCII with a control character, spaces, quotes; Unicode that SASLprep maps (non-ASCII space,
# a fullwidth letter, a soft hyphen mapped to nothing); a prohibited character used raw.
PASSWORDS = ["plain-Ascii_123", "tab\there 'quoted' \\", "caf\u00e9\u00a0\uff21\u00ad", "bidi\u05d0abc",
             "x" * 200]


@pytest.fixture(scope="module")
def server(pg_module):
    pg_module.query("CREATE ROLE scram_probe LOGIN")
    return pg_module


def tcp_cluster(pg_factory):
    cluster = pg_factory(tcp=True)
    with open(f"{cluster.datadir}/pg_hba.conf", "a", encoding="utf-8") as hba:
        hba.write("host all all 127.0.0.1/32 scram-sha-256\n")
    cluster.reload()
    return cluster


def server_secret(server, password):
    """The secret the server itself makes (password_encryption = scram-sha-256)."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE scram_probe PASSWORD {}").format(sql.Literal(password)))
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_probe'")
        return cur.fetchone()[0]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_secret_the_server_made_is_kept_for_the_same_password(server, password):
    secret = server_secret(server, password)
    assert secret.startswith("SCRAM-SHA-256$4096:")
    assert matches(password, secret)
    assert scram_secret(password, secret) == secret
    changed = scram_secret(password + "!", secret)
    assert changed != secret and not matches(password, changed) and matches(password + "!", changed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40))
def test_any_password_matches_the_servers_secret(server, password):
    assert matches(password, server_secret(server, password))


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_secret_made_here_logs_in_over_tcp(pg_factory, password):
    cluster = tcp_cluster(pg_factory)
    secret = scram_secret(password)
    assert secret != scram_secret(password), "each new secret gets its own salt"
    cluster.query(f"CREATE ROLE app LOGIN PASSWORD '{secret}'")
    assert cluster.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")[0][0] == secret
    with psycopg2.connect(host="127.0.0.1", port=cluster.port, dbname="postgres", user="app",
                          password=password) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "app"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=cluster.port, dbname="postgres", user="app",
                         password=password + "x")


def test_secrets_pass_through_and_bad_input_is_named():
    secret = scram_secret("pw")
    assert scram_secret(secret) == secret
    for bad, message in (("", "empty"), (None, "empty"), ("md5" + "0" * 32, "md5 hash")):
        with pytest.raises(AnsibleFilterError, match=message):
            scram_secret(bad)
    with pytest.raises(AnsibleFilterError, match="iterations must be a positive integer, not 0"):
        scram_secret("pw", iterations=0)
    assert not matches("pw", "not a secret") and not matches("pw", None)
