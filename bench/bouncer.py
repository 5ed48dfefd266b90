"""A PostgreSQL server and a PgBouncer in front of it, set up as pgfleet deploys them, for the
PgBouncer benches: TLS and scram-sha-256 from the client; through PgBouncer, transaction
pooling, the user looked up with auth_query via a SECURITY DEFINER function, TLS to the
server. Both listen on loopback; the database `bench` is pgbench's, at SCALE."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from pgcluster import PgCluster, free_port  # noqa: E402

PASSWORD = "bench-service-password"
LOOKUP = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_usename AND NOT usesuper"


def as_postgres(*argv, env=None, cwd=None):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          check=True, env=env, cwd=cwd).stdout


def make_certificate(directory):
    as_postgres("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", f"{directory}/tls.key", "-out", f"{directory}/tls.crt")
    os.chmod(f"{directory}/tls.key", 0o600)


def start_pgbouncer(cluster, directory, pool_size, max_client_conn):
    port = free_port()
    with open(f"{directory}/userlist.txt", "w", encoding="utf-8") as f:
        f.write(f'"pgbouncer_auth" "{PASSWORD}"\n')
    with open(f"{directory}/pgbouncer.ini", "w", encoding="utf-8") as f:
        f.write(f"""[databases]
bench = host=127.0.0.1 port={cluster.port} dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pidfile = {directory}/pgbouncer.pid
logfile = {directory}/pgbouncer.log
auth_type = scram-sha-256
auth_file = {directory}/userlist.txt
auth_user = pgbouncer_auth
auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1)
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
client_tls_sslmode = prefer
client_tls_cert_file = {directory}/tls.crt
client_tls_key_file = {directory}/tls.key
server_tls_sslmode = require
log_connections = 0
log_disconnections = 0
""")
    for name in ("userlist.txt", "pgbouncer.ini"):
        shutil.chown(f"{directory}/{name}", "postgres", "postgres")
        os.chmod(f"{directory}/{name}", 0o600)
    as_postgres("pgbouncer", "-d", f"{directory}/pgbouncer.ini")
    return port


def pgbench(port, *args, sslmode="require", cwd=None):
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGSSLMODE=sslmode)
    return as_postgres("pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "bench_service", *args, "bench",
                       env=env, cwd=cwd)


@contextlib.contextmanager
def server_and_bouncer(scale, max_connections, pool_size, max_client_conn):
    """Yield (cluster, {"direct": port, "pgbouncer": port}, work directory owned by postgres)."""
    cluster = PgCluster(tcp=True).init(fresh=True)
    work = tempfile.mkdtemp(prefix="pgfleet-bench-", dir="/var/tmp")
    shutil.chown(work, "postgres", "postgres")
    make_certificate(work)
    cluster.append_conf(f"ssl = on\nssl_cert_file = '{work}/tls.crt'\nssl_key_file = '{work}/tls.key'\n"
                        f"max_connections = {max_connections}\nfsync = on\n")
    bouncer = None
    try:
        cluster.start()
        for sql in (f"CREATE ROLE bench_service LOGIN PASSWORD '{PASSWORD}'",
                    f"CREATE ROLE pgbouncer_auth LOGIN PASSWORD '{PASSWORD}'"):
            cluster.query(sql)
        as_postgres(f"{cluster.bindir}/createdb", "-h", cluster.socket_dir, "-p", str(cluster.port), "-O", "bench_service", "bench")
        pgbench(cluster.port, "-i", "-q", "-s", str(scale))
        cluster.query("CREATE SCHEMA pgbouncer; CREATE FUNCTION pgbouncer.get_auth(p_usename text) "
                      "RETURNS TABLE (usename name, passwd text) LANGUAGE sql STABLE SECURITY DEFINER "
                      f"SET search_path = pg_catalog AS $fn${LOOKUP}$fn$; "
                      "REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC; "
                      "GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth; "
                      "GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth", dbname="bench")
        bouncer = start_pgbouncer(cluster, work, pool_size, max_client_conn)
        time.sleep(0.5)
        yield cluster, {"direct": cluster.port, "pgbouncer": bouncer}, work
    finally:
        if bouncer:
            subprocess.run(["pkill", "-f", f"pgbouncer -d {work}/pgbouncer.ini"], check=False)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
