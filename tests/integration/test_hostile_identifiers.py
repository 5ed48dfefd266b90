"""Every PostgreSQL identifier option of every module against hostile names (issue 19).

Quotes, '%', '%(x)s', NUL, unicode, the 63/64-byte boundary, reserved words and the empty
name: a module either does its job on exactly the object named, or refuses with a message
that names the option, before any SQL. Never a traceback, and a sentinel table with its
partitions and policy in the same database stays exactly as it was.
"""

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from modules import conn_args, run_module

# Names PostgreSQL accepts, and the ones the modules must refuse.
BOUNDARY = ["a" * 63, "é" * 31 + "a", "a" * 64, "é" * 32, "ü" * 40]
HOSTILE = ['"', "'", '"; DROP TABLE sentinel; --', "%", "%s", "%(x)s", "100%_x", "select", "user", "public",
           "Ünïcødé ✓", "tab\tname", " ", "", "a\x00b", "\x00", "x" * 63 + "\x00"] + BOUNDARY
NAMES = st.one_of(st.sampled_from(HOSTILE),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=70))

SENTINEL = """
CREATE SCHEMA sentinel;
CREATE TABLE sentinel.events (tenant int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE sentinel.events_a PARTITION OF sentinel.events FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');
INSERT INTO sentinel.events VALUES (1, '2020-01-05'), (2, '2020-01-06');
ALTER TABLE sentinel.events_a ENABLE ROW LEVEL SECURITY;
CREATE POLICY keep ON sentinel.events_a USING (tenant = 1);
"""


def own_schema(name):
    """A name the test may create and drop as a schema of its own (not public, the sentinel or pg_*)."""
    return name.lower() not in ("public", "sentinel", "information_schema") and not name.startswith("pg_")


def valid(name):
    return name != "" and "\x00" not in name and len(name.encode("utf-8", "surrogatepass")) <= 63


def snapshot(pg):
    return pg.query("""
        SELECT (SELECT array_agg(relname::text ORDER BY relname) FROM pg_class c JOIN pg_namespace n
                ON n.oid = c.relnamespace WHERE nspname = 'sentinel'),
               (SELECT array_agg(polname::text || pg_get_expr(polqual, polrelid) ORDER BY polname) FROM pg_policy
                WHERE polrelid = 'sentinel.events_a'::regclass),
               (SELECT count(*) FROM sentinel.events),
               (SELECT relrowsecurity FROM pg_class WHERE oid = 'sentinel.events_a'::regclass)""")


@pytest.fixture(scope="module")
def pg(pg_module):
    pg_module.query(SENTINEL)
    return pg_module


def ident(pg, template, **names):
    conn = pg.connect()
    try:
        return sql.SQL(template).format(**{k: sql.Identifier(v) for k, v in names.items()}).as_string(conn)
    finally:
        conn.close()


def check(pg, before, result, option, name):
    assert "exception" not in result, result  # an unexpected error is a defect here
    if not valid(name):
        assert result.get("failed"), result
        assert result["msg"].startswith(option + ":"), result["msg"]
        assert result.get("queries", []) == []
    else:
        assert not result.get("failed"), result
    assert snapshot(pg) == before


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def edge_cases(test):
    """The cases that must always run, whatever hypothesis draws besides."""
    for name in ("", "a\x00b", "a" * 63, "a" * 64, "é" * 32, "%(x)s", '"; DROP TABLE sentinel.events; --'):
        test = example(name=name)(test)
    return test


@SETTINGS
@edge_cases
@given(name=NAMES)
def test_pg_partition_table_and_schema(pg, name):
    assume(own_schema(name))
    before = snapshot(pg)
    if valid(name):
        pg.query(ident(pg, "DROP SCHEMA IF EXISTS {n} CASCADE; CREATE SCHEMA {n}; "
                           "CREATE TABLE {n}.{n} (at date NOT NULL) PARTITION BY RANGE (at)", n=name))
    if not valid(name):
        for option, args in (("table", dict(table=name)), ("schema", dict(schema=name, table="t"))):
            result = run_module("pg_partition", dict(conn_args(pg), interval="day", premake=1, **args))
            check(pg, before, result, option, name)
        return
    args = dict(conn_args(pg), schema=name, table=name, interval="day", premake=1)
    result = run_module("pg_partition", args)
    if len(name.encode("utf-8", "surrogatepass")) > 63 - len("_p20260101"):  # no room for the partition suffix
        assert result.get("failed") and "longer than PostgreSQL's 63 bytes" in result["msg"], result
        assert "exception" not in result and snapshot(pg) == before
    else:
        check(pg, before, result, "table", name)
        assert len(result["created"]) == 2 and all(n.startswith(name + "_p") for n in result["created"])
        assert run_module("pg_partition", args)["changed"] is False
    if valid(name):
        pg.query(ident(pg, "DROP SCHEMA {n} CASCADE", n=name))


@SETTINGS
@edge_cases
@given(name=NAMES)
def test_pg_partition_archive_schema(pg, name):
    assume(own_schema(name))
    pg.query("DROP TABLE IF EXISTS arch_t CASCADE; CREATE TABLE arch_t (at date NOT NULL) PARTITION BY RANGE (at)")
    made = run_module("pg_partition", dict(conn_args(pg), table="arch_t", interval="year", premake=0,
                                           start="2022-01-01"))
    assert len(made["created"]) >= 4, made
    args = dict(conn_args(pg), table="arch_t", interval="year", premake=0, retention="1", retention_mode="move",
                archive_schema=name)
    before = snapshot(pg)
    schemas = pg.query("SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace")
    result = run_module("pg_partition", args)
    check(pg, before, result, "archive_schema", name)
    if valid(name):
        moved = pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (name,))[0][0]
        assert moved == len(result["detached"]) > 0
        pg.query(ident(pg, "DROP SCHEMA {n} CASCADE", n=name))
    else:
        assert pg.query("SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace") == schemas


@SETTINGS
@edge_cases
@given(name=NAMES)
def test_pg_rls_policy_names_tables_and_roles(pg, name):
    pg.query("DROP TABLE IF EXISTS docs; CREATE TABLE docs (tenant int)")
    before = snapshot(pg)
    policy = dict(name=name, using="tenant = 1")
    result = run_module("pg_rls_policy", dict(conn_args(pg), table="docs", policies=[policy]))
    check(pg, before, result, "policies[0].name", name)
    if valid(name):
        stored = pg.query("SELECT polname FROM pg_policy WHERE polrelid = 'docs'::regclass")
        assert stored == [(name,)]
        assert run_module("pg_rls_policy", dict(conn_args(pg), table="docs", policies=[policy]))["changed"] is False
        gone = run_module("pg_rls_policy", dict(conn_args(pg), table="docs",
                                                policies=[dict(name=name, state="absent")]))
        assert gone["changed"] and pg.query("SELECT count(*) FROM pg_policy WHERE polrelid = 'docs'::regclass") == [(0,)]
    # The same name as a role the policy applies to.
    if valid(name) and name.lower() != "public":
        pg.query(ident(pg, "DROP ROLE IF EXISTS {n}; CREATE ROLE {n}", n=name))
    result = run_module("pg_rls_policy", dict(conn_args(pg), table="docs",
                                              policies=[dict(name="p", roles=[name], using="tenant = 1")]))
    check(pg, before, result, "policies[0].roles", name)
    if valid(name):
        expected = "{public}" if name.lower() == "public" else None
        roles = pg.query("SELECT polroles::regrole[]::text[] FROM pg_policy WHERE polname = 'p'")[0][0]
        assert (roles == ["-"] if expected else len(roles) == 1), roles
    pg.query("DROP TABLE docs")
    if valid(name) and name.lower() != "public":
        pg.query(ident(pg, "DROP ROLE {n}", n=name))


@pytest.mark.parametrize("name", ["", "a\x00b", "t" * 64])
def test_pg_rls_policy_table_and_schema_are_refused(pg, name):
    before = snapshot(pg)
    for option in ("table", "schema"):
        args = dict(conn_args(pg), table="docs", policies=[])
        args[option] = name
        result = run_module("pg_rls_policy", args)
        assert result.get("failed") and result["msg"].startswith(option + ":") and "exception" not in result, result
    assert snapshot(pg) == before


@pytest.mark.parametrize("option", ["login_db", "login_user"])
@pytest.mark.parametrize("name", ["", "post\x00gres", "p" * 64])
def test_connection_names_are_refused_before_connecting(pg, option, name):
    args = dict(conn_args(pg), table="docs", interval="day")
    args[option] = name
    result = run_module("pg_partition", args)
    assert result.get("failed") and result["msg"].startswith(option + ":") and "exception" not in result, result


@pytest.mark.parametrize("args, message", [
    (dict(replication_user="rep\x00licator"), "replication_user: "),
    (dict(replication_user=""), "replication_user: "),
    (dict(replication_user="r" * 64), "replication_user: "),
    (dict(method="pgbackrest", pgbackrest_stanza="main\n"), "pgbackrest_stanza: "),
    (dict(slot="s\n"), "slot: "),
])
def test_pg_replica_names_are_refused_before_anything(tmp_path, args, message):
    data_dir = tmp_path / "data"
    result = run_module("pg_replica", dict(dict(data_dir=str(data_dir), primary_host="127.0.0.1"), **args))
    assert result.get("failed") and result["msg"].startswith(message) and "exception" not in result, result
    assert not data_dir.exists()


@pytest.mark.parametrize("name", ["demo\n", "de\x00mo", ""])
def test_stanza_names_with_newlines_or_nul_are_refused(name):
    result = run_module("pgbackrest_stanza", dict(stanza=name))
    assert result.get("failed") and "not a valid stanza name" in result["msg"] and "exception" not in result, result
