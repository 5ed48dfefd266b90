#!/usr/bin/python
# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_rls_policy
short_description: Row-level security on a table and its policies, declaratively
version_added: 0.1.0
description:
  - Enables (and optionally forces) row-level security on a table and makes its
    policies match I(policies).
  - A policy is compared with what the server stores (C(pg_policy), C(pg_get_expr)), so an
    equivalent expression written with other spacing or casts is no change. Roles or
    expressions that differ are changed with C(ALTER POLICY); a different command or
    permissive/restrictive type needs C(DROP POLICY) and C(CREATE POLICY).
  - Every expression is first checked to be one self-contained expression (no C(;), no
    comment, balanced parentheses), then tried on the server inside a savepoint that is
    rolled back. An expression that does not parse, names an unknown column, or a
    policy that names an unknown role, is refused with the server's message and nothing
    is changed.
  - All changes of one run are made in one transaction.
  - I(table), I(schema), policy names and role names are refused before any SQL when empty,
    holding a NUL byte, or longer than PostgreSQL's 63 bytes (the server would truncate them,
    and a later run would look for a policy that was stored under another name).
extends_documentation_fragment:
  - pgfleet.core.postgres
  - pgfleet.core.attributes
options:
  table:
    description: The table, unqualified.
    type: str
    required: true
  schema:
    description: Its schema.
    type: str
    default: public
  rls:
    description:
      - C(enabled) turns row-level security on; C(forced) also applies it to the table's
        owner; C(disabled) turns it off.
    type: str
    choices: [enabled, forced, disabled]
    default: enabled
  policies:
    description: The policies to manage on the table.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Policy name.
        type: str
        required: true
      state:
        description: Whether the policy should exist.
        type: str
        choices: [present, absent]
        default: present
      command:
        description: The command the policy applies to.
        type: str
        choices: [ALL, SELECT, INSERT, UPDATE, DELETE]
        default: ALL
      permissive:
        description: C(true) for PERMISSIVE (combined with OR), C(false) for RESTRICTIVE (AND).
        type: bool
        default: true
      roles:
        description: Roles the policy applies to; C(public) means every role.
        type: list
        elements: str
        default: [public]
      using:
        description: The USING expression (rows that are visible / may be changed).
        type: str
      with_check:
        description: The WITH CHECK expression (rows that may be written).
        type: str
  exclusive:
    description: Drop the table's policies that I(policies) does not name.
    type: bool
    default: false
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Tenants see and write only their own rows
  pgfleet.core.pg_rls_policy:
    login_db: app_db
    table: documents
    rls: forced
    exclusive: true
    policies:
      - name: tenant_isolation
        roles: [app_service]
        using: tenant_id = current_setting('app.tenant_id')::int
        with_check: tenant_id = current_setting('app.tenant_id')::int
"""

RETURN = r"""
queries:
  description: The statements that were run (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ['ALTER TABLE "public"."documents" ENABLE ROW LEVEL SECURITY']
rls:
  description: Row-level security state of the table after the run.
  returned: always
  type: str
  sample: enabled
policies:
  description: The table's policies after the run, as the server stores them.
  returned: always
  type: list
  elements: dict
  sample: [{name: tenant_isolation, command: ALL, permissive: true, roles: [app_service],
            using: "(tenant_id = (current_setting('app.tenant_id'::text))::integer)", with_check: null}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure, run_guarded
from ansible_collections.pgfleet.core.plugins.module_utils.postgres import (
    Session, check_identifiers, postgres_argument_spec, psycopg2, qualified, sql,
)
from ansible_collections.pgfleet.core.plugins.module_utils.sql_expression import expression_error

COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
PROBE = "pgfleet_probe_policy"

POLICIES_SQL = """
SELECT p.polname, p.polcmd, p.polpermissive,
       CASE WHEN p.polroles = '{0}' THEN ARRAY['public']
            ELSE ARRAY(SELECT rolname::text FROM pg_roles WHERE oid = ANY(p.polroles) ORDER BY rolname) END,
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_policy p WHERE p.polrelid = %s ORDER BY p.polname
"""


def read_table(session, schema, table):
    rows = session.fetch(
        "SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table))
    return rows[0] if rows else None


def read_policies(session, oid, exclude=PROBE):
    out = {}
    for name, cmd, permissive, roles, using, check in session.fetch(POLICIES_SQL, (oid,)):
        if name != exclude:
            out[name] = dict(name=name, command=COMMANDS[cmd], permissive=permissive,
                             roles=sorted(roles), using=using, with_check=check)
    return out


def by_name(policies):
    return sorted(policies.values(), key=lambda x: x["name"])


def drop_policy(name, target):
    return sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(name), target)


def rls_state(enabled, forced):
    return "forced" if enabled and forced else ("enabled" if enabled else "disabled")


def policy_sql(verb, name, target, pol):
    """CREATE or ALTER POLICY; the expressions are user SQL checked by expression_error."""
    parts = [sql.SQL("{} POLICY {} ON {}").format(sql.SQL(verb), sql.Identifier(name), target)]
    if verb == "CREATE":
        parts.append(sql.SQL("AS PERMISSIVE" if pol["permissive"] else "AS RESTRICTIVE"))
        parts.append(sql.SQL("FOR " + pol["command"]))
    roles = [sql.SQL("PUBLIC") if r.lower() == "public" else sql.Identifier(r) for r in pol["roles"]]
    parts.append(sql.SQL("TO {}").format(sql.SQL(", ").join(roles)))
    if pol.get("using") is not None:
        parts.append(sql.SQL("USING ({}\n)").format(sql.SQL(pol["using"])))
    if pol.get("with_check") is not None:
        parts.append(sql.SQL("WITH CHECK ({}\n)").format(sql.SQL(pol["with_check"])))
    return sql.SQL(" ").join(parts)


def normalise(session, module, target, oid, pol):
    """Let the server parse the policy (savepoint, rolled back); return its stored form."""
    session.fetch("SAVEPOINT pgfleet_probe")
    try:
        session.fetch(policy_sql("CREATE", PROBE, target, pol))
        stored = read_policies(session, oid, exclude=None)[PROBE]
    except psycopg2.Error as e:
        session.rollback()
        raise ModuleFailure("policy %r is not valid on %s.%s: %s" % (
            pol["name"], module.params["schema"], module.params["table"], str(e).strip()), queries=[])
    session.fetch("ROLLBACK TO SAVEPOINT pgfleet_probe")
    stored["name"] = pol["name"]
    # The server stores roles as given; compare them as it would report them.
    stored["roles"] = sorted("public" if r.lower() == "public" else r for r in pol["roles"])
    return stored


def validate(module):
    p = module.params
    named = [("table", p["table"]), ("schema", p["schema"])]
    for i, pol in enumerate(p["policies"]):
        named.append(("policies[%d].name" % i, pol["name"]))
        named.extend(("policies[%d].roles" % i, role) for role in pol["roles"] or [])
    check_identifiers(named)
    names = set()
    for pol in module.params["policies"]:
        if pol["name"] in names:
            raise ModuleFailure("policy %r is declared twice" % pol["name"])
        names.add(pol["name"])
        if pol["name"] == PROBE:
            raise ModuleFailure("policy name %r is reserved by this module" % PROBE)
        if pol["state"] == "absent":
            continue
        if pol["using"] is None and pol["with_check"] is None:
            raise ModuleFailure("policy %r needs using or with_check" % pol["name"])
        if pol["command"] == "INSERT" and pol["using"] is not None:
            raise ModuleFailure("policy %r: an INSERT policy takes only with_check, not using" % pol["name"])
        if pol["command"] in ("SELECT", "DELETE") and pol["with_check"] is not None:
            raise ModuleFailure("policy %r: a %s policy takes only using, not with_check" % (pol["name"], pol["command"]))
        for key in ("using", "with_check"):
            if pol[key] is not None:
                why = expression_error(pol[key])
                if why:
                    raise ModuleFailure("policy %r: %s %r is refused: %s" % (pol["name"], key, pol[key], why))
        if not pol["roles"]:
            raise ModuleFailure("policy %r: roles must name at least one role (or public)" % pol["name"])


def plan(session, module, target, oid, current):
    """Statements that make the table's policies match the task, in order, and the
    declared policies in the server's stored form (by name)."""
    p = module.params
    statements, wanted = [], {}
    declared = {pol["name"]: pol for pol in p["policies"]}
    for name, pol in declared.items():
        have = current.get(name)
        if pol["state"] == "absent":
            if have:
                statements.append(drop_policy(name, target))
            continue
        want = wanted[name] = normalise(session, module, target, oid, pol)
        if have is None:
            statements.append(policy_sql("CREATE", name, target, pol))
        elif (have["command"], have["permissive"]) != (want["command"], want["permissive"]) or \
                (have["using"] is not None and want["using"] is None) or \
                (have["with_check"] is not None and want["with_check"] is None):
            statements.append(drop_policy(name, target))
            statements.append(policy_sql("CREATE", name, target, pol))
        elif have != want:
            statements.append(policy_sql("ALTER", name, target, pol))
    if p["exclusive"]:
        for name in sorted(set(current) - set(declared)):
            statements.append(drop_policy(name, target))
    return statements, wanted


def predict(module, current, wanted):
    """The policies check mode expects after the run."""
    p = module.params
    after = {} if p["exclusive"] else dict(current)
    for pol in p["policies"]:
        after.pop(pol["name"], None)
    after.update(wanted)
    return by_name(after)


def apply(module, state):
    """The whole run; STATE receives the session, so an unexpected error still reports its queries."""
    p = module.params
    validate(module)

    session = state["session"] = Session.for_module(module)
    try:
        table = read_table(session, p["schema"], p["table"])
        if table is None:
            raise ModuleFailure("table %s.%s does not exist in database %r" % (p["schema"], p["table"], p["login_db"]))
        oid, enabled, forced, relkind = table
        if relkind not in ("r", "p"):
            raise ModuleFailure("%s.%s is not a table (relkind %r)" % (p["schema"], p["table"], relkind))
        target = qualified(p["schema"], p["table"])
        before_policies = read_policies(session, oid)
        before = dict(rls=rls_state(enabled, forced), policies=by_name(before_policies))

        statements = []
        want_enabled, want_forced = p["rls"] != "disabled", p["rls"] == "forced"
        if want_enabled != enabled:
            statements.append(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                target, sql.SQL("ENABLE" if want_enabled else "DISABLE")))
        if want_forced != forced:
            statements.append(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                target, sql.SQL("FORCE" if want_forced else "NO FORCE")))
        policy_statements, wanted = plan(session, module, target, oid, before_policies)
        statements += policy_statements

        if not statements:
            after = before
        elif module.check_mode:
            after = dict(rls=p["rls"], policies=predict(module, before_policies, wanted))
            session.queries.extend(st.as_string(session.conn) for st in statements)
        else:
            for statement in statements:
                session.execute(statement)
            row = read_table(session, p["schema"], p["table"])
            after = dict(rls=rls_state(row[1], row[2]),
                         policies=by_name(read_policies(session, oid)))
            session.commit()
    except psycopg2.Error as e:
        session.rollback()
        raise ModuleFailure("%s.%s: %s" % (p["schema"], p["table"], str(e).strip()), queries=session.queries)
    finally:
        session.close()

    result = dict(changed=bool(statements), queries=session.queries, rls=after["rls"], policies=after["policies"])
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


def main():
    spec = postgres_argument_spec()
    spec.update(
        table=dict(type="str", required=True),
        schema=dict(type="str", default="public"),
        rls=dict(type="str", choices=["enabled", "forced", "disabled"], default="enabled"),
        policies=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            command=dict(type="str", choices=["ALL", "SELECT", "INSERT", "UPDATE", "DELETE"], default="ALL"),
            permissive=dict(type="bool", default=True),
            roles=dict(type="list", elements="str", default=["public"]),
            using=dict(type="str"),
            with_check=dict(type="str"),
        )),
        exclusive=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    state = {}
    run_guarded(module, lambda: apply(module, state),
                lambda: dict(queries=state["session"].queries) if "session" in state else {})


if __name__ == "__main__":
    main()
