#!/usr/bin/env python3
"""pgbench TPS with pgfleet's host-derived tuning against Debian's default configuration,
on the same server binary, the same data directory and the same host, in one run.

One cluster (fsync on) holds a pgbench database of scale 30 (about 450 MB, over three
times the default shared_buffers of 128 MB). The server is restarted with or without an
included file holding what the pgfleet.core.pg_tune filter derives for this host, then
pgbench runs the TPC-B-like script and the select-only one for SECONDS each, and a
write-heavy TPC-B run of LONG_SECONDS, long enough that Debian's max_wal_size (1 GB)
forces checkpoints (the checkpoints each run caused are printed). The configurations
alternate their order round by round after a discarded warm-up (bench/sides.py); the
headlines are the medians of the per-round ratios tuned/default. The data still fits in
this host's page cache: the tuned shared_buffers gains less here than on a host whose data
does not.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, ".lab", "collections"), os.path.join(ROOT, "tests", "integration"),
                os.path.dirname(os.path.abspath(__file__))]

from ansible_collections.pgfleet.core.plugins.filter.pg_conf import pg_conf_value  # noqa: E402
from ansible_collections.pgfleet.core.plugins.filter.pg_tune import pg_tune  # noqa: E402
from pgcluster import PgCluster  # noqa: E402
from sides import alternate, headline, round_ratios  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = 20
LONG_SECONDS = int(os.environ.get("BENCH_LONG_SECONDS", "120"))
SCALE = 30
CLIENTS = 8
MODES = ("debian_default", "pgfleet_tuned")
WORKLOADS = {"tpcb_like": ([], SECONDS), "select_only": (["-S"], SECONDS), "tpcb_long_write": ([], LONG_SECONDS)}
CHECKPOINTS = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"


def host_facts():
    with open("/proc/meminfo", encoding="utf-8") as f:
        memory_mb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) // 1024
    return {"memory_mb": memory_mb, "cores": os.cpu_count(), "storage": "ssd", "max_connections": 200}


def pgbench(cluster, *args):
    return subprocess.run(["runuser", "-u", "postgres", "--", f"{cluster.bindir}/pgbench", "-h", cluster.socket_dir,
                           "-p", str(cluster.port), *args, "bench"], capture_output=True, text=True, check=True).stdout


def stop_clean(cluster):
    """A fast shutdown (with its checkpoint), so the next start does no crash recovery."""
    subprocess.run(["runuser", "-u", "postgres", "--", f"{cluster.bindir}/pg_ctl", "-D", cluster.datadir,
                    "-m", "fast", "-w", "stop"], capture_output=True, check=True)


def main():
    facts = host_facts()
    tuned = pg_tune(facts)
    cluster = PgCluster().init(fresh=True)
    tuned_file = os.path.join(cluster.confdir, "tuned.conf")
    cluster.append_conf("fsync = on\ninclude_if_exists 'tuned.conf'\n")
    try:
        cluster.start()
        subprocess.run(["runuser", "-u", "postgres", "--", f"{cluster.bindir}/createdb", "-h", cluster.socket_dir,
                        "-p", str(cluster.port), "bench"], check=True)
        pgbench(cluster, "-i", "-q", "-s", str(SCALE))
        size = cluster.query("SELECT pg_size_pretty(pg_database_size('bench'))")[0][0]
        stop_clean(cluster)

        def measure(mode):
            if mode == "pgfleet_tuned":
                with open(tuned_file, "w", encoding="utf-8") as f:
                    f.writelines(f"{k} = {pg_conf_value(v)}\n" for k, v in tuned.items())
            elif os.path.exists(tuned_file):
                os.unlink(tuned_file)
            cluster.start()
            sample = {}
            for load, (flags, seconds) in WORKLOADS.items():
                before = cluster.query(CHECKPOINTS)[0][0]
                out = pgbench(cluster, "-c", str(CLIENTS), "-j", "2", "-T", str(seconds), "-n", *flags)
                sample[load + "_tps"] = float(re.search(r"tps = ([\d.]+)", out).group(1))
                sample[load + "_checkpoints"] = cluster.query(CHECKPOINTS)[0][0] - before
            stop_clean(cluster)
            return sample

        print(f"host: {facts['memory_mb']} MB RAM, {facts['cores']} cores; pgbench scale {SCALE} ({size}), "
              f"{CLIENTS} clients; {SECONDS} s runs and a {LONG_SECONDS} s write-heavy run")
        print(f"tuned: shared_buffers {tuned['shared_buffers']}, max_wal_size {tuned['max_wal_size']}, "
              f"work_mem {tuned['work_mem']}, wal_compression {tuned['wal_compression']}")
        samples = alternate(MODES, ROUNDS, measure)
        for load in WORKLOADS:
            headline("tuning", f"TPS tuned/default, {load}",
                     round_ratios(samples, "pgfleet_tuned", "debian_default", load + "_tps"))
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
