#!/usr/bin/env python3
"""Backup and restore time: pgBackRest (zst level 3, process-max 2, aes-256-cbc, as the
pgbackrest role configures it) against pg_dump -Fc / pg_restore -j 2, on the same pgbench
database (scale 50, about 750 MB), on the same host, in one run.

pgBackRest: a full backup of the whole cluster into a posix repository, then a restore
into a new data directory and the start of that cluster until it accepts connections.
pg_dump: a custom-format dump of the database, then pg_restore with 2 jobs into a new
database (tables, then indexes and constraints). pg_restore writes into the running server,
so it is timed twice: into a settled server (WAL switched and archived, then a CHECKPOINT),
the fair figure, and again right after the previous restore's bulk load, as it lands when
nothing waits (the as-loaded figure). The sides alternate their order round by round after
a discarded warm-up (bench/sides.py); every sample is printed; the headlines are the medians
of the per-round ratios (pg_dump's time / pgBackRest's time).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "integration"), os.path.dirname(os.path.abspath(__file__))]

from pgcluster import PgCluster, free_port  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

SCALE = 50
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def as_postgres(*argv, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, check=True, **kw)


def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def main():
    cluster = PgCluster().init(fresh=True)
    work = tempfile.mkdtemp(prefix="pgfleet-bench-backup-", dir="/var/tmp")
    shutil.chown(work, "postgres", "postgres")
    repo, restored = os.path.join(work, "repo"), os.path.join(work, "restored")
    conf = os.path.join(work, "pgbackrest.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(f"[global]\nrepo1-path={repo}\nrepo1-cipher-type=aes-256-cbc\n"
                "repo1-cipher-pass=bench-passphrase-not-a-secret-0123456789\nrepo1-retention-full=1\n"
                f"compress-type=zst\ncompress-level=3\nprocess-max=2\nstart-fast=y\narchive-check=n\n"
                f"log-path={work}\nlock-path={work}\nlog-level-console=warn\n"
                f"[bench]\npg1-path={cluster.datadir}\npg1-port={cluster.port}\npg1-socket-path={cluster.socket_dir}\n")
    os.chmod(conf, 0o644)
    cluster.append_conf(f"fsync = on\narchive_mode = on\n"
                        f"archive_command = 'pgbackrest --config={conf} --stanza=bench archive-push %p'\n")
    restored_port = free_port()
    try:
        cluster.start()
        conn = ["-h", cluster.socket_dir, "-p", str(cluster.port)]
        as_postgres(f"{cluster.bindir}/createdb", *conn, "bench")
        as_postgres(f"{cluster.bindir}/pgbench", *conn, "-i", "-q", "-s", str(SCALE), "bench")
        backrest = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
        as_postgres(*backrest, "stanza-create")
        size = int(as_postgres(f"{cluster.bindir}/psql", *conn, "-XAtc", "SELECT pg_database_size('bench')").stdout)

        psql = [f"{cluster.bindir}/psql", *conn, "-XAtc"]

        def backrest_restore():
            shutil.rmtree(restored, ignore_errors=True)
            os.makedirs(restored, mode=0o700)
            shutil.chown(restored, "postgres", "postgres")
            as_postgres(*backrest, f"--pg1-path={restored}", "--type=immediate", "--target-action=promote",
                        "--archive-mode=off", "restore")
            with open(os.path.join(restored, "postgresql.auto.conf"), "a", encoding="utf-8") as f:
                f.write(f"port = {restored_port}\nunix_socket_directories = '{work}'\narchive_mode = off\n")
            as_postgres(f"{cluster.bindir}/pg_ctl", "-D", restored, "-l", os.path.join(work, "restored.log"),
                        "-w", "-t", "600", "start")
            while as_postgres(f"{cluster.bindir}/psql", "-h", work, "-p", str(restored_port), "-XAtc",
                              "SELECT pg_is_in_recovery()").stdout.strip() != "f":
                time.sleep(0.1)

        def settle():
            """Every WAL segment so far archived, then a checkpoint: nothing left from the last load."""
            segment = as_postgres(*psql, "SELECT pg_walfile_name(pg_switch_wal())").stdout.strip()
            deadline = time.monotonic() + 600
            while as_postgres(*psql, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").stdout.strip() < segment:
                assert time.monotonic() < deadline, "WAL archiving did not catch up"
                time.sleep(0.2)
            as_postgres(*psql, "CHECKPOINT")

        def pg_restore():
            as_postgres(f"{cluster.bindir}/dropdb", *conn, "--if-exists", "bench_restored")
            as_postgres(f"{cluster.bindir}/createdb", *conn, "bench_restored")
            elapsed = timed(lambda: as_postgres(f"{cluster.bindir}/pg_restore", *conn, "-j", "2", "-d",
                                                "bench_restored", dump))
            rows = as_postgres(f"{cluster.bindir}/psql", *conn, "-d", "bench_restored", "-XAtc",
                               "SELECT count(*) FROM pgbench_accounts").stdout.strip()
            assert rows == str(SCALE * 100000), rows
            return elapsed

        dump = os.path.join(work, "bench.dump")
        stored = {}

        def measure(side):
            settle()
            if side == "pgbackrest":
                backup = timed(lambda: as_postgres(*backrest, "--type=full", "backup"))
                restore = timed(backrest_restore)
                as_postgres(f"{cluster.bindir}/pg_ctl", "-D", restored, "-m", "fast", "-w", "stop")
                stored[side] = du(repo) / 2**20
                return {"backup_s": backup, "restore_s": restore, "restore_as_loaded_s": restore}
            backup = timed(lambda: as_postgres(f"{cluster.bindir}/pg_dump", *conn, "-Fc", "-f", dump, "bench"))
            stored[side] = os.path.getsize(dump) / 2**20
            settle()
            restore = pg_restore()
            as_loaded = pg_restore()  # right after the bulk load of the one before
            return {"backup_s": backup, "restore_s": restore, "restore_as_loaded_s": as_loaded}

        print(f"pgbench scale {SCALE}: database {size / 2**20:.0f} MB, {os.cpu_count()} cores; seconds")
        samples = alternate(["pgbackrest", "pg_dump"], ROUNDS, measure)
        print(f"stored: pgBackRest repository {stored['pgbackrest']:.0f} MB (zst, whole cluster with indexes), "
              f"pg_dump file {stored['pg_dump']:.0f} MB (data only: indexes are rebuilt on restore)")
        headline("backup", "backup time pg_dump/pgBackRest", round_ratios(samples, "pg_dump", "pgbackrest", "backup_s"))
        headline("backup", "restore time pg_restore/pgBackRest, settled server",
                 round_ratios(samples, "pg_dump", "pgbackrest", "restore_s"))
        headline("backup", "restore time pg_restore/pgBackRest, right after a bulk load",
                 round_ratios(samples, "pg_dump", "pgbackrest", "restore_as_loaded_s"))
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{cluster.bindir}/pg_ctl", "-D", restored, "-m",
                        "immediate", "stop"], capture_output=True, check=False)
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
