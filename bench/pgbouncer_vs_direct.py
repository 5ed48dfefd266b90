#!/usr/bin/env python3
"""Connection overhead: `pgbench -C` (a new connection for every transaction) straight to
PostgreSQL and through PgBouncer, on the same server, in one run.

Both paths are what pgfleet deploys: TLS and scram-sha-256 from the client, and through
PgBouncer transaction pooling, the user looked up with auth_query via a SECURITY DEFINER
function, TLS to the server. Each is also run with clients without TLS, to show the share
of the handshake. The four sides alternate their order round by round after a discarded
warm-up (bench/sides.py), every sample is printed, and the headline is the client
connection time through PgBouncer over direct (the requirement documents promise 60% less
connection overhead: a ratio of at most 0.40), the median of the per-round ratios.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "integration"), os.path.dirname(os.path.abspath(__file__))]

from pgcluster import PgCluster, free_port  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
SECONDS = 10
CLIENTS = 8
PASSWORD = "bench-service-password"
# Clients over TLS (as pgfleet's PgBouncer demands), and without it to show what TLS costs.
CLIENT_TLS = {"tls": "require", "plain": "disable"}
LOOKUP = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_usename AND NOT usesuper"


def as_postgres(*argv, env=None):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          check=True, env=env).stdout


def make_certificate(directory):
    as_postgres("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", f"{directory}/tls.key", "-out", f"{directory}/tls.crt")
    os.chmod(f"{directory}/tls.key", 0o600)


def start_pgbouncer(cluster, directory):
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
default_pool_size = {CLIENTS}
max_client_conn = 200
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


def pgbench(port, *args, sslmode="require"):
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGSSLMODE=sslmode)
    return as_postgres("pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "bench_service", *args, "bench", env=env)


def server_sessions(cluster):
    """Sessions the server has opened in database bench (PostgreSQL 14+ counts them)."""
    return cluster.query("SELECT sessions FROM pg_stat_database WHERE datname = 'bench'")[0][0]


def main():
    cluster = PgCluster(tcp=True).init(fresh=True)
    work = tempfile.mkdtemp(prefix="pgfleet-bench-", dir="/var/tmp")
    shutil.chown(work, "postgres", "postgres")
    make_certificate(work)
    cluster.append_conf(f"ssl = on\nssl_cert_file = '{work}/tls.crt'\nssl_key_file = '{work}/tls.key'\n"
                        "max_connections = 100\nfsync = on\n")
    bouncer = None
    try:
        cluster.start()
        for sql in (f"CREATE ROLE bench_service LOGIN PASSWORD '{PASSWORD}'",
                    f"CREATE ROLE pgbouncer_auth LOGIN PASSWORD '{PASSWORD}'"):
            cluster.query(sql)
        as_postgres(f"{cluster.bindir}/createdb", "-h", cluster.socket_dir, "-p", str(cluster.port), "-O", "bench_service", "bench")
        pgbench(cluster.port, "-i", "-q", "-s", "10")
        cluster.query("CREATE SCHEMA pgbouncer; CREATE FUNCTION pgbouncer.get_auth(p_usename text) "
                      "RETURNS TABLE (usename name, passwd text) LANGUAGE sql STABLE SECURITY DEFINER "
                      f"SET search_path = pg_catalog AS $fn${LOOKUP}$fn$; "
                      "REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC; "
                      "GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth; "
                      "GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth", dbname="bench")
        bouncer = start_pgbouncer(cluster, work)
        time.sleep(0.5)
        paths = {"direct": cluster.port, "pgbouncer": bouncer}

        def measure(side):
            path, mode = side.split(" client ")
            opened = server_sessions(cluster)
            out = pgbench(paths[path], "-C", "-S", "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS),
                          sslmode=CLIENT_TLS[mode])
            done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
            return {"connect_ms": float(re.search(r"average connection time = ([\d.]+) ms", out).group(1)),
                    "tps": float(re.search(r"tps = ([\d.]+)", out).group(1)),
                    # sessions the server forked per 1,000 transactions
                    "server_sessions_per_1000": (server_sessions(cluster) - opened) * 1000 / done}

        print(f"pgbench -C -S (scale 10), {CLIENTS} clients, {SECONDS} s a sample; scram-sha-256 on every client "
              "connection; PgBouncer to the server over TLS")
        sides = [f"{path} client {mode}" for mode in CLIENT_TLS for path in paths]
        samples = alternate(sides, ROUNDS, measure)
        for mode in CLIENT_TLS:
            bouncer_side, direct_side = f"pgbouncer client {mode}", f"direct client {mode}"
            headline("pgbouncer", f"client connection time pgbouncer/direct, client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "connect_ms"),
                     goal="<= 0.40" if mode == "tls" else None)
            headline("pgbouncer", f"TPS pgbouncer/direct (pgbench -C), client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "tps"))
            headline("pgbouncer", f"server sessions forked pgbouncer/direct, client {mode}",
                     round_ratios(samples, bouncer_side, direct_side, "server_sessions_per_1000"))
    finally:
        if bouncer:
            subprocess.run(["pkill", "-f", f"pgbouncer -d {work}/pgbouncer.ini"], check=False)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
