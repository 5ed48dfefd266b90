"""Declaring a partitioned table: site.yml partitions it on the primary and installs the
daily timer everywhere; the timer's service maintains the primary and skips standbys.

Runs after test_idempotence_check.py (pytest takes files in name order), then changes
the fleet the way a user would: by adding pg_partitioned_tables to the inventory.
"""

import json
import os
import tempfile

from conftest import changed_tasks, converge, psql

TABLES = {"pg_partitioned_tables": [{"db": "postgres", "table": "molecule_messages", "interval": "month",
                                     "premake": 3, "default_partition": True, "retention": "12 months"}]}


def test_declared_table_is_partitioned_and_maintained_daily(primary, replicas):
    psql(primary, "CREATE TABLE IF NOT EXISTS molecule_messages (id bigserial, created_at timestamptz NOT NULL) "
                  "PARTITION BY RANGE (created_at)")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(TABLES, f)
    try:
        first = converge("-e", "@" + f.name)
        assert changed_tasks(first), "declaring a table changed nothing"
        again = converge("-e", "@" + f.name)
        assert changed_tasks(again) == []
    finally:
        os.unlink(f.name)

    # DEFAULT + the current month + 3 ahead
    assert psql(primary, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'molecule_messages'::regclass") == "5"
    for host in [primary, *replicas]:
        assert host.service("pgfleet-partition-maintenance.timer").is_enabled
        assert host.service("pgfleet-partition-maintenance.timer").is_running
        host.check_output("systemctl start pgfleet-partition-maintenance.service")
        last = host.check_output("journalctl -u pgfleet-partition-maintenance.service -o cat --no-pager -n 20")
        if host is primary:
            assert '"table": "postgres:public.molecule_messages"' in last
        else:
            assert "standby" in last
    config = primary.file("/etc/pgfleet/partitions.json")
    assert config.mode == 0o640 and config.group == "postgres"
