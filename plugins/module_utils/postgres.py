# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one PostgreSQL connection layer of pgfleet's modules.

Connection options shared by every SQL module, a connection that records every
statement it runs (returned to the user as `queries`), and identifier helpers that
only ever quote through psycopg2.sql.
"""

from __future__ import annotations

import traceback

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names

try:
    import psycopg2
    from psycopg2 import sql
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by Session
    psycopg2 = sql = None
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()


def postgres_argument_spec():
    """Connection options; mirrored by the pgfleet.core.postgres doc fragment."""
    return dict(
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", default="", no_log=True),
        login_host=dict(type="str", default=""),
        login_unix_socket=dict(type="path", default=""),
        login_port=dict(type="int", default=5432),
        login_db=dict(type="str", default="postgres"),
        ssl_mode=dict(type="str", default="prefer",
                      choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        ssl_rootcert=dict(type="path"),
        connect_timeout=dict(type="int", default=10),
    )


def identifier_error(option, value):
    """Why VALUE cannot be the PostgreSQL name given as OPTION, or None.

    psycopg2 cuts a string at a NUL and the server truncates a name to 63 bytes: either
    way the SQL would act on another object than the one named, so both are refused
    before any SQL, as is an empty name.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return "%s: %r is not a string" % (option, value)
    if value == "":
        return "%s: an empty name is not a PostgreSQL identifier" % option
    if "\x00" in value:
        return "%s: %r contains a NUL byte, which PostgreSQL names cannot hold" % (option, value)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_IDENTIFIER_BYTES:
        return "%s: %r is %d bytes long; PostgreSQL names hold at most %d bytes (it would truncate it)" % (
            option, value, size, MAX_IDENTIFIER_BYTES)
    return None


def check_identifiers(named):
    """Raise ModuleFailure naming the first bad name of NAMED, an iterable of (option, value)."""
    for option, value in named:
        why = identifier_error(option, value)
        if why:
            raise ModuleFailure(why)


class Session:
    """A psycopg2 connection whose statements are recorded for the module's result.

    PARAMS are the postgres_argument_spec options; errors raise ModuleFailure. No Ansible
    import here: the host-side partition runner uses it too.
    """

    def __init__(self, params, application_name):
        if PSYCOPG2_IMPORT_ERROR:
            raise ModuleFailure("psycopg2 is required on this host (Debian package python3-psycopg2)",
                                exception=PSYCOPG2_IMPORT_ERROR)
        self.queries = []
        p = params
        check_identifiers([("login_db", p["login_db"]), ("login_user", p["login_user"])])
        kwargs = dict(
            dbname=p["login_db"], user=p["login_user"], port=p["login_port"],
            sslmode=p["ssl_mode"], connect_timeout=p["connect_timeout"],
            application_name=application_name,
        )
        host = p["login_host"] or p["login_unix_socket"]
        if host:
            kwargs["host"] = host
        if p["login_password"]:
            kwargs["password"] = p["login_password"]
        if p["ssl_rootcert"]:
            kwargs["sslrootcert"] = p["ssl_rootcert"]
        try:
            self.conn = psycopg2.connect(**kwargs)
        except psycopg2.Error as e:
            # libpq's message names the host and the reason, never the password.
            raise ModuleFailure("cannot connect to database %r as %r: %s" % (p["login_db"], p["login_user"], str(e).strip()))
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            # Deterministic text for bounds and expressions read back from the catalog.
            cur.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'")

    @classmethod
    def for_module(cls, module):
        return cls(module.params, "pgfleet.core.%s" % module._name.split(".")[-1])

    def execute(self, query, params=None, record=True):
        """Run one statement; record it when it is part of what the module changes.

        Composed SQL carries its values as sql.Literal: with PARAMS it would go through
        %-formatting, where a '%' in a quoted identifier breaks or changes the statement.
        """
        if params is not None and isinstance(query, sql.Composable):
            raise TypeError("composed SQL must not be run with parameters: use sql.Literal for its values")
        with self.conn.cursor() as cur:
            if record:
                self.queries.append(cur.mogrify(query, params).decode("utf-8"))
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def fetch(self, query, params=None):
        """A read-only catalog query: run, not recorded."""
        return self.execute(query, params, record=False)

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()

    def close(self):
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def qualified(schema, name):
    """schema.name, each part quoted as an identifier."""
    return sql.Identifier(schema, name)
