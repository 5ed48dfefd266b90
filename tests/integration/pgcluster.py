"""Throwaway PostgreSQL clusters for integration tests: real servers, on this host.

Each cluster lives in its own directory under /var/tmp, runs as the postgres OS user,
listens on a Unix socket in that directory (and on 127.0.0.1 when asked) and is removed
when the test ends. Tests run as root; the local socket trusts only the cluster's own
directory, which only root and postgres can reach.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import psycopg2


def pg_bindir(version: str = "15") -> str:
    bindir = f"/usr/lib/postgresql/{version}/bin"
    if not os.path.exists(os.path.join(bindir, "initdb")):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        raise RuntimeError(f"PostgreSQL {version} server binaries not found in {bindir} (have: {found}); run make prereqs")
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, version: str = "15", tcp: bool = False, external_conf: bool = False):
        self.bindir = pg_bindir(version)
        self.port = free_port()
        self.tcp = tcp
        pw = pwd.getpwnam("postgres")
        self.base = tempfile.mkdtemp(prefix="pgfleet-test-", dir="/var/tmp")
        os.chmod(self.base, 0o700)
        os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.datadir = os.path.join(self.base, "data")
        self.socket_dir = self.base
        self.logfile = os.path.join(self.base, "server.log")
        # external_conf: postgresql.conf outside the data directory, as Debian lays clusters
        # out, so a copy of another cluster's data directory keeps this cluster's port.
        self.confdir = os.path.join(self.base, "conf") if external_conf else self.datadir
        if external_conf:
            os.mkdir(self.confdir)
            os.chown(self.confdir, pw.pw_uid, pw.pw_gid)
            self.append_conf(
                f"data_directory = '{self.datadir}'\n"
                f"hba_file = '{self.datadir}/pg_hba.conf'\n"
                f"ident_file = '{self.datadir}/pg_ident.conf'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"listen_addresses = '{'127.0.0.1' if tcp else ''}'\n"
                "fsync = off\n")
            os.chown(os.path.join(self.confdir, "postgresql.conf"), pw.pw_uid, pw.pw_gid)

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, check=True)

    _template = None  # one initdb per test process; each cluster starts from a copy of it

    def init(self, fresh: bool = False) -> "PgCluster":
        """A data directory from the shared template, or from its own initdb when FRESH
        (copies of the template share one system identifier)."""
        if fresh:
            self._as_postgres(f"{self.bindir}/initdb", "-D", self.datadir, "--data-checksums",
                              "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres")
            return self._own_settings()
        if PgCluster._template is None:
            template = tempfile.mkdtemp(prefix="pgfleet-template-", dir="/var/tmp")
            pw = pwd.getpwnam("postgres")
            os.chown(template, pw.pw_uid, pw.pw_gid)
            self._as_postgres(f"{self.bindir}/initdb", "-D", os.path.join(template, "data"), "--data-checksums",
                              "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres")
            atexit.register(shutil.rmtree, template, True)
            PgCluster._template = os.path.join(template, "data")
        subprocess.run(["cp", "-a", PgCluster._template, self.datadir], check=True)
        return self._own_settings()

    def _own_settings(self) -> "PgCluster":
        if self.confdir != self.datadir:
            return self
        self.append_conf(
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            f"listen_addresses = '{'127.0.0.1' if self.tcp else ''}'\n"
            "fsync = off\n"
        )
        return self

    def init_standby_of(self, primary: "PgCluster") -> "PgCluster":
        """A streaming standby of PRIMARY, cloned with pg_basebackup over its socket."""
        self._as_postgres(f"{self.bindir}/pg_basebackup", "-h", primary.socket_dir, "-p", str(primary.port),
                          "-U", "postgres", "-D", self.datadir, "-R", "-X", "stream", "-c", "fast")
        self.append_conf(f"port = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n")
        return self

    def append_conf(self, text: str) -> None:
        with open(os.path.join(self.confdir, "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write(text)

    def start(self) -> "PgCluster":
        try:
            self._as_postgres(f"{self.bindir}/pg_ctl", "-D", self.confdir, "-l", self.logfile, "-w", "start")
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"cluster failed to start: {e.stderr}\n{self.log()}") from e
        return self

    def reload(self) -> None:
        self._as_postgres(f"{self.bindir}/pg_ctl", "-D", self.datadir, "reload")

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bindir}/pg_ctl", "-D", self.datadir,
                        "-m", "immediate", "stop"], capture_output=True, check=False)

    def log(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def connect(self, dbname: str = "postgres", user: str = "postgres", **kw):
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, dbname=dbname, user=user, **kw)
        conn.autocommit = True
        return conn

    def query(self, sql: str, params=None, dbname: str = "postgres"):
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def execute(self, *statements: str) -> None:
        """Statements that refuse a transaction block (CREATE DATABASE, ALTER SYSTEM), one by one."""
        conn = self.connect()  # autocommit: `with conn` would open a transaction block
        try:
            for statement in statements:
                conn.cursor().execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        """A database closed to PUBLIC, as postgresql_primary's databases.yml leaves a service database."""
        self.execute(f"CREATE DATABASE {name}", f"REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
