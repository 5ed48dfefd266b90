"""pgBackRest on a real fleet: a repository host over TLS, scheduled backups, the restore
drill (and its failure on a corrupted repository), encryption, a primary killed mid-backup,
point-in-time recovery through playbooks/restore.yml, and a restore onto another host.
The tests run in file order: the last two rewind the primary, then turn the replica into
a promoted copy outside the fleet."""

import json
import time

from conftest import assert_check_mode_clean, backrest, run_playbook, sql, wait_for
from fleet import changed_tasks, converge, run_job

REPO_DIR = "/var/lib/pgbackrest"
PROM = "/var/lib/prometheus/node-exporter"


def info(repo):
    out = backrest(repo, "--output=json", "info")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)[0]


def good_backups(repo):
    return [b for b in info(repo).get("backup", []) if not b.get("error")]


def metric(host, path, series):
    """The value of SERIES (a name, or a name with its exact labels) in a textfile."""
    for line in host.file(path).content_string.splitlines():
        key, value = line.rpartition(" ")[::2]
        if key == series or ("{" not in series and key.startswith(series + "{")):
            return float(value)
    return None


def drill(repo, expect_rows=None):
    """Run the drill script with the role's settings (and extra row expectations)."""
    settings = json.loads(repo.file("/etc/pgbackrest/drill.json").content_string)
    settings["expect_rows"] = expect_rows or {}
    repo.run("cat > /tmp/drill-test.json <<'EOF'\n%s\nEOF" % json.dumps(settings))
    out = repo.run("/usr/local/sbin/pgfleet-restore-drill --config /tmp/drill-test.json")
    return out, json.loads(out.stdout)


def wait_archived(primary):
    """Switch to a new WAL segment and wait until the archiver has pushed it."""
    segment = sql(primary, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    sql(primary, "SELECT pg_switch_wal()")
    assert wait_for(lambda: sql(primary, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment,
                    timeout=90), "WAL segment %s was not archived" % segment


def test_check_mode_on_converged_fleet_is_clean():  # first: later tests change the fleet's data
    assert_check_mode_clean()


def test_a_tag_runs_its_component_alone_and_changes_nothing():
    """`site.yml --tags pgbackrest` on the converged fleet: the checks every run makes, WAL
    archiving, the restarts it may need and the repository host; no other component."""
    report = converge("--tags", "pgbackrest")
    # A role's argument check is tagged always by Ansible itself: it runs in every play (its
    # name carries the role's: "<role> : Validating arguments against arg spec ...").
    ran = {play["play"]["name"] for play in report["plays"]
           if any("Validating arguments against arg spec" not in task["task"]["name"] for task in play["tasks"])}
    assert {"WAL archiving to the pgBackRest repository host",
            "The pgBackRest repository host (stanza, schedules, restore drill)",
            "Gather the facts of every host once"} <= ran, ran
    assert not ran & {"Host firewall", "PostgreSQL servers", "PostgreSQL primary", "PostgreSQL replicas",
                      "Daily encrypted logical dumps", "Exporters (TLS, basic auth) on every host",
                      "Partitioned tables", "Monthly performance reports"}, ran
    assert changed_tasks(report) == []


def test_tls_servers_only_answer_their_peers(primary, replica, repo, cluster):
    for host in (primary, replica, repo):
        assert ":8432 " in host.run("ss -Hltn").stdout
        conf = host.file("/etc/pgbackrest/pgbackrest.conf")
        assert (conf.user, conf.group, conf.mode) == ("postgres", "postgres", 0o640)
    # The PostgreSQL hosts never hold the posix repository's passphrase.
    for host in (primary, replica):
        assert "cipher-pass" not in host.file("/etc/pgbackrest/pgbackrest.conf").content_string
    # The primary's TLS server is for the repository host alone: the replica, holding a
    # valid fleet certificate, is dropped by the primary's firewall, and with the firewall
    # opened to it for this probe, refused by the TLS server (it accepts the repository
    # host's certificate name only).
    replica.run("install -m 644 /dev/null /tmp/empty.conf")
    probe = ("runuser -u postgres -- pgbackrest --config=/tmp/empty.conf --stanza=main --repo1-path=/tmp/probe "
             f"--pg1-host=mol-bk-pg1 --pg1-host-type=tls --pg1-path={cluster['data_dir']} "
             "--pg1-host-cert-file=/etc/pgbackrest/tls/pgbackrest.crt "
             "--pg1-host-key-file=/etc/pgbackrest/tls/pgbackrest.key "
             "--pg1-host-ca-file=/etc/pgbackrest/tls/root.crt --log-level-console=warn --io-timeout=3 stanza-create")
    dropped = replica.run(probe)
    assert dropped.rc != 0 and "access denied" not in dropped.stdout + dropped.stderr
    address = replica.check_output("hostname -I").split()[0]
    primary.check_output(f"nft insert rule inet pgfleet input ip saddr {address} tcp dport 8432 accept")
    try:
        out = replica.run(probe)
    finally:
        primary.check_output("systemctl restart pgfleet-firewall")  # the role's rules again
    assert out.rc != 0
    assert "access denied" in out.stdout + out.stderr, out.stdout + out.stderr


def test_scheduled_backup_lands_in_info_and_metrics(repo):
    timers = repo.run("systemctl list-timers --all --no-pager --output=json")
    names = {t["unit"] for t in json.loads(timers.stdout)}
    assert {"pgfleet-backup-full.timer", "pgfleet-backup-diff.timer", "pgfleet-restore-drill.timer"} <= names
    before = {b["label"] for b in good_backups(repo)}
    # The unit the full timer starts, started now.
    out = repo.run("systemctl start pgfleet-backup@full.service")
    assert out.rc == 0, repo.run("journalctl -u pgfleet-backup@full --no-pager -n 20").stdout
    new = [b for b in good_backups(repo) if b["label"] not in before]
    assert [b["type"] for b in new] == ["full"]
    assert info(repo)["status"]["code"] == 0
    stamp = metric(repo, PROM + "/pgbackrest_main.prom",
                   'pgbackrest_backup_last_timestamp_seconds{stanza="main",type="full"}')
    assert stamp is not None and time.time() - stamp < 120
    assert metric(repo, PROM + "/pgbackrest_main_run_full.prom",
                  'pgfleet_backup_last_run_success{stanza="main",type="full"}') == 1


def test_backup_job_and_its_bad_input(repo):
    """backup.yml as AWX's job template runs it (ansible-runner, the survey's answer)."""
    report = run_job("pgfleet backup", {"backup_type": "diff"})
    assert "[mol-bk-repo] diff backup: " in report["progress"], report["progress"]
    assert good_backups(repo)[-1]["type"] == "diff"
    bad = run_playbook("backup.yml", "-e", "backup_type=weekly", expect_success=False)
    assert bad["rc"] != 0
    assert "not 'weekly'" in json.dumps(bad)


def test_repository_is_encrypted(primary, repo):
    marker = "pgfleet-plaintext-marker-7f3a"
    sql(primary, "CREATE TABLE IF NOT EXISTS enc_probe (note text)", db="payments_db")
    sql(primary, "INSERT INTO enc_probe VALUES ('%s')" % marker, db="payments_db")
    assert repo.run("systemctl start pgfleet-backup@incr.service").rc == 0
    files = repo.run("find %s -type f -size +0", REPO_DIR).stdout.split()
    assert len(files) > 10
    # Every file, the info files included, is OpenSSL-format ciphertext ...
    heads = repo.run("for f in $(find %s -type f -size +0); do head -c 8 \"$f\"; echo; done" % REPO_DIR).stdout.split("\n")
    assert all(h == "Salted__" for h in heads if h), set(heads)
    # ... the marker row appears nowhere, and pgBackRest without the passphrase reads nothing.
    assert repo.run("grep -rl %s %s", marker, REPO_DIR).rc == 1
    repo.run("install -m 644 /dev/null /tmp/empty.conf")
    out = repo.run("runuser -u postgres -- pgbackrest --config=/tmp/empty.conf --stanza=main --repo1-path=%s info", REPO_DIR)
    said = out.stdout_bytes + out.stderr_bytes
    assert b"status: error" in said and b"unable to load info file" in said, said[:300]


def test_restore_drill_passes_and_checks_row_counts(primary, repo):
    sql(primary, "CREATE TABLE IF NOT EXISTS drill_rows AS SELECT g AS id FROM generate_series(1, 1000) g", db="payments_db")
    assert repo.run("systemctl start pgfleet-backup@incr.service").rc == 0
    report = run_job("pgfleet verify backup")
    assert report["rc"] == 0
    out, result = drill(repo, {"payments_db.public.drill_rows": 1000})
    assert out.rc == 0 and result["success"], result
    assert result["rows"] >= 1001 and result["rto_seconds"] > 0
    print("restore drill RTO %.2f s (steps %s)" % (result["rto_seconds"], result["steps"]))
    assert metric(repo, PROM + "/pgfleet_restore_drill.prom", "pgfleet_restore_drill_success") == 1
    # An expectation the data cannot meet fails the drill.
    out, result = drill(repo, {"payments_db.public.drill_rows": 1001})
    assert out.rc != 0 and not result["success"]
    assert "payments_db.public.drill_rows: 1000 rows, expected at least 1001" in result["error"]
    assert repo.run("test -e /var/lib/pgfleet-drill/data").rc == 1  # cleaned up either way


def test_corrupted_repository_fails_the_drill_loudly(repo):
    label = good_backups(repo)[-1]["label"]
    # The largest file of the newest backup's full set (an incremental refers to it).
    full = label.split("_")[0]
    target = repo.run("find %s/backup/main/%s/pg_data -type f -printf '%%s %%p\\n' | sort -n | tail -1"
                      % (REPO_DIR, full)).stdout.split()[1]
    repo.run("cp -p %s /tmp/pristine && printf 'garbage!' | dd of=%s bs=1 seek=4096 conv=notrunc", target, target)
    try:
        report = run_playbook("verify_backup.yml", expect_success=False)
        assert report["rc"] != 0
        assert "restore drill failed" in json.dumps(report)
        assert metric(repo, PROM + "/pgfleet_restore_drill.prom", "pgfleet_restore_drill_success") == 0
    finally:
        repo.run("cp -p /tmp/pristine %s", target)
    assert run_playbook("verify_backup.yml")["rc"] == 0


def test_primary_killed_mid_backup_leaves_repository_consistent(primary, repo, cluster):
    unit = cluster["service"]
    # Enough data that the copy takes several seconds.
    sql(primary, "CREATE TABLE IF NOT EXISTS bulk AS SELECT g AS id, md5(g::text) AS pad "
                 "FROM generate_series(1, 1500000) g", db="payments_db")
    before = {b["label"] for b in good_backups(repo)}
    # A container's systemd cannot see a service's cgroup empty (cgroup v1 without
    # per-unit groups), so after the kill it would wait TimeoutStopSec (1 h) for the
    # killed processes: shorten that for this test only (a runtime drop-in).
    primary.run(f"mkdir -p /run/systemd/system/{unit}.service.d && printf '[Service]\\nTimeoutStopSec=5s\\n'"
                f" > /run/systemd/system/{unit}.service.d/zz-test.conf && systemctl daemon-reload")
    repo.run("systemctl start --no-block pgfleet-backup@full.service")
    assert wait_for(lambda: "backup" in info(repo)["status"].get("lock", {}) and info(repo)["status"]["lock"]["backup"]["held"],
                    timeout=60, step=0.2), "the backup never started"
    # Paused while the primary dies, so the kill lands mid-backup however fast the copy is
    # (on an idle machine this backup once finished before a kill a second later).
    repo.run("pkill -STOP -x pgbackrest")
    primary.run(f"pkill -KILL -f 'postgres -D|{cluster['bin_dir']}/postgres'")
    repo.run("pkill -CONT -x pgbackrest")
    assert wait_for(lambda: repo.run("systemctl is-active pgfleet-backup@full.service").stdout.strip() != "activating",
                    timeout=120), "the backup did not stop after the kill"
    assert repo.run("systemctl is-failed pgfleet-backup@full.service").stdout.strip() == "failed"
    # BackupFailed fires from this at once, not when the newest good backup grows old.
    assert metric(repo, PROM + "/pgbackrest_main_run_full.prom",
                  'pgfleet_backup_last_run_success{stanza="main",type="full"}') == 0
    assert wait_for(lambda: primary.run(f"systemctl is-active {unit}").stdout.strip() in ("failed", "inactive"),
                    timeout=60), primary.run(f"systemctl status {unit} --no-pager").stdout
    primary.run(f"rm -r /run/systemd/system/{unit}.service.d && systemctl daemon-reload")
    assert primary.run(f"timeout 120 systemctl start {unit}").rc == 0
    assert wait_for(lambda: primary.run("runuser -u postgres -- psql -XAtc 'SELECT 1'").rc == 0, timeout=60)
    assert {b["label"] for b in good_backups(repo)} == before  # the aborted backup is not offered
    assert backrest(repo, "--log-level-console=warn", "verify").rc == 0
    out = repo.run("systemctl start pgfleet-backup@full.service")
    assert out.rc == 0, repo.run("journalctl -u pgfleet-backup@full --no-pager -n 20").stdout
    assert [b["type"] for b in good_backups(repo) if b["label"] not in before] == ["full"]
    assert metric(repo, PROM + "/pgbackrest_main_run_full.prom",
                  'pgfleet_backup_last_run_success{stanza="main",type="full"}') == 1
    assert info(repo)["status"]["code"] == 0


def test_logical_dumps_are_encrypted_and_restore_into_a_new_database(primary, replica):
    sql(primary, "CREATE TABLE dump_probe AS SELECT g AS id, 'dump-marker-' || g AS note "
                 "FROM generate_series(1, 1234) g", db="payments_db")
    # The standby's timer runs too, and leaves the dumping to the primary.
    assert replica.run("systemctl start pgfleet-logical-dump.service").rc == 0
    assert replica.run("ls /var/backups/pgfleet-dumps").stdout.strip() == ""
    out = primary.run("systemctl start pgfleet-logical-dump.service")
    assert out.rc == 0, primary.run("journalctl -u pgfleet-logical-dump --no-pager -n 20").stdout
    assert metric(primary, PROM + "/pgfleet_logical_dump_run.prom", "pgfleet_logical_dump_last_run_success") == 1
    dumps = primary.run("ls /var/backups/pgfleet-dumps").stdout.split()
    assert {d.rsplit("-", 1)[0] for d in dumps} >= {"payments_db", "auth_db", "admin_db", "profile_db"}
    path = "/var/backups/pgfleet-dumps/" + [d for d in dumps if d.startswith("payments_db-")][0]
    assert primary.file(path).mode == 0o600 and primary.file("/etc/pgfleet/logical-dump.pass").mode == 0o600
    # A gpg packet, not pg_dump's custom-format magic (bytes: ciphertext is not text).
    assert primary.run("head -c 5 %s", path).stdout_bytes != b"PGDMP"
    assert primary.run("grep -c dump-marker- %s", path).stdout.strip() == "0"
    report = run_playbook("restore_dump.yml", "-e", "dump_database=payments_db")
    assert report["rc"] == 0
    assert sql(primary, "SELECT count(*) FROM dump_probe", db="payments_db_restored") == "1234"
    bad = run_playbook("restore_dump.yml", "-e", "dump_database=nope_db", expect_success=False)
    assert bad["rc"] != 0 and "dump_database 'nope_db' is not one of the dumped databases" in json.dumps(bad)
    sql(primary, "DROP DATABASE payments_db_restored")


def test_restore_refuses_bad_requests_and_touches_nothing(primary):
    started = sql(primary, "SELECT pg_postmaster_start_time()")
    cases = [
        (dict(restore_type="label", restore_label="20200101-000000F", restore_confirm="mol-bk-pg1"),
         "20200101-000000F is not in it"),
        (dict(restore_type="time", restore_time="2001-01-01 00:00:00+00", restore_confirm="mol-bk-pg1"),
         "before the end of the oldest backup"),
        (dict(restore_type="time", restore_time="yesterday-ish", restore_confirm="mol-bk-pg1"),
         "restore_time 'yesterday-ish' is not a time"),
        (dict(restore_type="latest"), "restore_confirm '' must repeat restore_host 'mol-bk-pg1'"),
    ]
    for args, message in cases:
        report = run_playbook("restore.yml", "-e", json.dumps(args), expect_success=False)
        assert report["rc"] != 0, args
        assert message in json.dumps(report), (args, json.dumps(report)[-2000:])
    assert sql(primary, "SELECT pg_postmaster_start_time()") == started


def test_point_in_time_recovery_end_to_end(primary, replica, repo):
    sql(primary, "CREATE TABLE pitr (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())", db="payments_db")
    sql(primary, "CREATE TABLE keep_me AS SELECT g AS id FROM generate_series(1, 500) g", db="payments_db")
    sql(primary, "INSERT INTO pitr (id) SELECT generate_series(1, 100)", db="payments_db")
    time.sleep(1.5)
    target = sql(primary, "SELECT clock_timestamp()")
    time.sleep(1.5)
    sql(primary, "INSERT INTO pitr (id) SELECT generate_series(101, 200)", db="payments_db")
    sql(primary, "DROP TABLE keep_me", db="payments_db")
    wait_archived(primary)
    start = time.monotonic()
    # As AWX's job template runs it: ansible-runner, the survey's answers.
    report = run_job("pgfleet restore", dict(
        restore_type="time", restore_time=target, restore_confirm="mol-bk-pg1", restore_backup="incr"))
    rto = time.monotonic() - start
    # The restore and the replica's clone said how far they were while they ran.
    assert "[mol-bk-pg1] pgBackRest restore: " in report["progress"], report["progress"]
    assert "[mol-bk-pg2] clone of mol-bk-pg1 into " in report["progress"], report["progress"]
    # Exactly the rows committed before the target, and the dropped table with its rows.
    assert sql(primary, "SELECT count(*), max(id) FROM pitr", db="payments_db") == "100|100"
    assert sql(primary, "SELECT count(*) FROM keep_me", db="payments_db") == "500"
    assert sql(primary, "SELECT pg_is_in_recovery()") == "f"
    # The replica was rebuilt from the restored primary and streams again.
    assert wait_for(lambda: sql(replica, "SELECT count(*) FROM pitr", db="payments_db") == "100", timeout=60)
    assert sql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1"
    # The new timeline archives and is backed up.
    assert info(repo)["status"]["code"] == 0
    print("PITR through restore.yml (stop, delta restore, recovery to the target, promotion, replica "
          "rebuilt, new backup): %.1f s" % rto)


def test_restore_onto_another_host_leaves_the_fleet_alone(primary, replica, repo):
    """Last: the replica's host becomes a promoted copy outside the fleet."""
    sql(primary, "CREATE TABLE copy_probe AS SELECT g AS id FROM generate_series(1, 321) g", db="payments_db")
    wait_archived(primary)
    started = sql(primary, "SELECT pg_postmaster_start_time()")
    report = run_playbook("restore.yml", "-e", json.dumps(dict(
        restore_type="latest", restore_host="mol-bk-pg2", restore_confirm="mol-bk-pg2")))
    assert report["rc"] == 0
    # A writable copy with everything archived, which never archives into the stanza.
    assert sql(replica, "SELECT pg_is_in_recovery()") == "f"
    assert sql(replica, "SELECT count(*) FROM copy_probe", db="payments_db") == "321"
    assert sql(replica, "SHOW archive_mode") == "off"
    # The primary was not touched and still archives into the repository.
    assert sql(primary, "SELECT pg_postmaster_start_time()") == started
    assert sql(primary, "SELECT pg_is_in_recovery()") == "f"
    wait_archived(primary)
    # While the copy runs on a host of the stanza, pgBackRest refuses to back up (two
    # primaries) rather than back up the wrong one; the playbook tells the way back.
    check = backrest(repo, "check")
    # pgBackRest 2.45 (Debian 12) prints the error on stderr, 2.55 (Debian 13) on stdout.
    assert check.rc == 56 and "more than one primary cluster found" in check.stdout + check.stderr, check.stdout
    assert "until it is a replica again" in json.dumps(report)
