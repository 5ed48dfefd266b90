"""Replicas keep up with a write load: pgbench on the primary, replay lag sampled on the
primary (pg_stat_replication) for every replica while it runs."""

import time

from conftest import psql


def test_replicas_lag_under_one_second_under_pgbench_load(primary, replicas):
    if psql(primary, "SELECT count(*) FROM pg_database WHERE datname = 'bench'") == "0":
        psql(primary, "CREATE DATABASE bench")
    primary.run_expect([0], "runuser -u postgres -- pgbench -i -q -s 5 bench")
    primary.run_expect([0], "setsid runuser -u postgres -- timeout 20 pgbench -n -c 4 -j 2 -T 15 bench "
                            "> /tmp/pgbench.out 2>&1 < /dev/null &")
    names = {r.backend.get_hostname().replace("-", "_") for r in replicas}
    worst, samples = 0.0, 0
    deadline = time.monotonic() + 14
    time.sleep(2)
    while time.monotonic() < deadline:
        rows = psql(primary, "SELECT application_name || ' ' || coalesce(extract(epoch FROM replay_lag), 0) "
                             "FROM pg_stat_replication").splitlines()
        lags = dict(row.split() for row in rows)
        assert names <= set(lags), rows
        worst = max([worst, *(float(lags[n]) for n in names)])
        samples += 1
        time.sleep(0.5)
    time.sleep(5)
    summary = primary.check_output("cat /tmp/pgbench.out")
    assert "number of failed transactions: 0" in summary and "tps = " in summary, summary
    print(f"\nreplay lag under pgbench: worst {worst:.3f} s over {samples} samples; "
          + summary[summary.index("tps = "):].splitlines()[0])
    assert samples >= 10 and worst < 1.0
