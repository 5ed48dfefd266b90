"""pg_rls_policy against a real PostgreSQL 15: the seed's multi-tenant table."""

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from modules import conn_args, run_module

TENANT = "tenant_id = current_setting('app.tenant_id')::int"
POLICY = dict(name="tenant_isolation", roles=["app_service"], using=TENANT, with_check=TENANT)


@pytest.fixture
def db(pg):
    pg.query("""
        CREATE ROLE app_service LOGIN;
        CREATE TABLE documents (id serial PRIMARY KEY, tenant_id int NOT NULL, body text);
        GRANT SELECT, INSERT, UPDATE ON documents TO app_service;
        GRANT USAGE ON SEQUENCE documents_id_seq TO app_service;
        INSERT INTO documents (tenant_id, body) VALUES (1, 'a1'), (1, 'b1'), (2, 'a2');
    """)
    return pg


def rls(cluster, **kw):
    args = dict(conn_args(cluster), table="documents", policies=[POLICY])
    args.update(kw)
    return run_module("pg_rls_policy", args, check=kw.pop("_check", False))


def policies(cluster, table="documents"):
    return cluster.query("SELECT polname, polcmd, polpermissive, pg_get_expr(polqual, polrelid) "
                         "FROM pg_policy WHERE polrelid = %s::regclass ORDER BY polname", (table,))


def as_tenant(cluster, tenant):
    conn = psycopg2.connect(host=cluster.socket_dir, port=cluster.port, dbname="postgres", user="app_service")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET app.tenant_id = %s", (str(tenant),))
    return conn, cur


def test_service_role_sees_and_writes_only_its_tenant(db):
    result = rls(db)
    assert result["changed"] and not result.get("failed"), result
    conn, cur = as_tenant(db, 1)
    cur.execute("SELECT body FROM documents ORDER BY body")
    assert cur.fetchall() == [("a1",), ("b1",)]
    cur.execute("INSERT INTO documents (tenant_id, body) VALUES (1, 'c1')")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
        cur.execute("INSERT INTO documents (tenant_id, body) VALUES (2, 'sneaky')")
    cur.execute("UPDATE documents SET body = 'x' WHERE tenant_id = 2")
    assert cur.rowcount == 0
    conn.close()
    assert db.query("SELECT count(*) FROM documents WHERE tenant_id = 2") == [(1,)]


def test_second_run_changes_nothing(db):
    first = rls(db)
    second = rls(db)
    assert first["changed"] is True
    assert second["changed"] is False and second["queries"] == []
    assert second["diff"]["before"] == second["diff"]["after"]


def test_equivalent_expression_is_not_a_change(db):
    rls(db)
    spaced = "(tenant_id=(current_setting( 'app.tenant_id'::text ))::integer)"
    result = rls(db, policies=[dict(POLICY, using=spaced, with_check=spaced)])
    assert result["changed"] is False, result["queries"]


def test_check_mode_predicts_and_changes_nothing(db):
    result = run_module("pg_rls_policy", dict(conn_args(db), table="documents", rls="forced", policies=[POLICY]),
                        check=True)
    assert result["changed"] is True
    assert any("CREATE POLICY" in q for q in result["queries"])
    assert any("FORCE ROW LEVEL SECURITY" in q for q in result["queries"])
    assert policies(db) == []
    assert db.query("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'documents'") == [(False, False)]
    real = rls(db, rls="forced")
    assert real["diff"]["after"] == result["diff"]["after"]


def test_roles_change_uses_alter_policy(db):
    db.query("CREATE ROLE reporting")
    rls(db)
    result = rls(db, policies=[dict(POLICY, roles=["app_service", "reporting"])])
    assert result["changed"] and [q.split(" ON ")[0] for q in result["queries"]] == ['ALTER POLICY "tenant_isolation"']
    assert db.query("SELECT array_length(polroles, 1) FROM pg_policy") == [(2,)]


def test_command_change_recreates_policy(db):
    rls(db)
    result = rls(db, policies=[dict(POLICY, command="SELECT", with_check=None)])
    assert [q.split(" ")[0] for q in result["queries"]] == ["DROP", "CREATE"]
    assert policies(db)[0][1] == "r"


def test_exclusive_drops_undeclared_policies_and_absent_drops_one(db):
    db.query("CREATE POLICY legacy ON documents USING (true)")
    kept = rls(db)
    assert [p[0] for p in policies(db)] == ["legacy", "tenant_isolation"] and kept["changed"]
    rls(db, exclusive=True)
    assert [p[0] for p in policies(db)] == ["tenant_isolation"]
    gone = rls(db, policies=[dict(name="tenant_isolation", state="absent")])
    assert gone["changed"] and policies(db) == []


@pytest.mark.parametrize(("expr", "error"), [
    ("tenant_id = = 1", "syntax error"),
    ("no_such_column = 1", 'column "no_such_column" does not exist'),
    ("true; DROP TABLE documents", "would end the statement"),
    ("true); DROP TABLE documents; --", "did not open"),
    ("true) WITH CHECK (true", "did not open"),
    ("tenant_id = 1 -- trailing", "comments are not allowed"),
    ("body = 'unterminated", "not closed"),
])
def test_bad_expression_is_refused_and_nothing_changes(db, expr, error):
    result = rls(db, rls="forced", policies=[dict(POLICY, using=expr)])
    assert result.get("failed") and error in result["msg"], result
    assert "tenant_isolation" in result["msg"]
    assert policies(db) == []
    assert db.query("SELECT relrowsecurity FROM pg_class WHERE relname = 'documents'") == [(False,)]
    assert db.query("SELECT count(*) FROM documents") == [(3,)]


def test_unknown_role_is_refused_and_nothing_changes(db):
    result = rls(db, policies=[dict(POLICY, roles=["no_such_role"])])
    assert result.get("failed") and 'role "no_such_role" does not exist' in result["msg"]
    assert policies(db) == []


def test_missing_table_is_named(db):
    result = rls(db, table="nope")
    assert result.get("failed") and "public.nope does not exist" in result["msg"]


NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\0"),
                min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 60 and s.strip())


@settings(max_examples=25, deadline=None)
@given(table=NAMES, policy=NAMES)
def test_any_identifier_is_quoted_safely(pg_module, table, policy):
    pg_module.query(sql.SQL("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (tenant_id int)").format(
        t=sql.Identifier(table)).as_string(pg_module.connect()))
    args = dict(conn_args(pg_module), table=table,
                policies=[dict(name=policy, using="tenant_id = 1")])
    first = run_module("pg_rls_policy", args)
    assert first["changed"] and not first.get("failed"), first
    assert [p["name"] for p in first["policies"]] == [policy]
    again = run_module("pg_rls_policy", args)
    assert again["changed"] is False
