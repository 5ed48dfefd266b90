"""k8s_postgres's rendered objects run for real with `podman kube play` (kubeplay.py says what
podman 4.3 needs changed): the image `make k8s-image` builds, the StatefulSet's pod on a new
volume, the backup CronJob's pod backing up through the TLS server to S3 (moto behind TLS on
the pods' bridge), the restore drill CronJob's pod, the pod deleted and played again on its
volume, and the restore Job's pod restoring into a fresh volume from which a second database
pod starts with every row (and, to a point in time, with the rows before it only).
No Kubernetes API server runs here: scheduling, Services, NetworkPolicy and the claim's
binding are not exercised (test_k8s_manifests.py validates those objects offline)."""

import copy
import json
import os
import shutil
import subprocess
import time
import urllib.request

import psycopg2
import pytest

from kubeplay import KubePlay, podman
from pgcluster import free_port
from services import MotoS3, make_tls
from test_k8s_manifests import rendered_objects

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORK, SUBNET, GATEWAY = "pgfleet-k8s-test", "10.89.207.0/24", "10.89.207.1"
POD_HOST = "postgres-0.postgres-headless.pgfleet.svc"
SERVICE_HOST = "postgres.pgfleet.svc"
NEON_HOST = "ep-pgfleet-test.eu-central-1.aws.neon.test"  # stood in for by the StatefulSet's pod
POOLER_HOST = "pooler.pgfleet.svc"
S3_HOST = "s3.storage.svc.cluster.local"  # an in-cluster S3 (MinIO or the like): path-style
ROWS = 20000


def openssl(directory, *argv):
    subprocess.run(["openssl", *argv], cwd=directory, check=True, capture_output=True)


def client_cert(directory, cn):
    """A client certificate for CN signed by make_tls's CA."""
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", "client.key", "-out", "client.csr")
    openssl(directory, "x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "client.crt")
    return os.path.join(directory, "client.crt"), os.path.join(directory, "client.key")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The rendered objects, a bridge of their own, moto's S3 on its gateway; the database pod played."""
    if subprocess.run(["bash", os.path.join(ROOT, "lab", "k8s", "build-image.sh")], check=False).returncode != 0:
        pytest.fail("make k8s-image failed")
    base = tmp_path_factory.mktemp("kubeplay")
    os.chmod(base, 0o755)
    tls_dir = base / "tls"
    tls_dir.mkdir()
    tls = make_tls(str(tls_dir), hosts=(SERVICE_HOST, POD_HOST, S3_HOST, NEON_HOST, POOLER_HOST, GATEWAY))
    cert, key = client_cert(str(tls_dir), "postgres-backup")
    for side in ("deploy", "restore", "neon"):
        (base / side).mkdir()
    s3_port = free_port()
    inputs = dict(k8s_postgres_superuser_password="su-kube-play-Pa55", k8s_postgres_password="app-kube-play-Pa55",
                  k8s_postgres_tls_cert=read(tls["server.crt"]), k8s_postgres_tls_key=read(tls["server.key"]),
                  k8s_postgres_tls_ca=read(tls["ca.crt"]), k8s_postgres_memory="512Mi", k8s_postgres_cpu="1",
                  k8s_postgres_backup_s3_bucket="pgfleet-k8s", k8s_postgres_backup_s3_endpoint=S3_HOST,
                  k8s_postgres_backup_s3_port=s3_port, k8s_postgres_backup_s3_uri_style="path",
                  k8s_postgres_backup_s3_ca=read(tls["ca.crt"]), k8s_postgres_backup_s3_key="testing",
                  k8s_postgres_backup_s3_key_secret="testing", k8s_postgres_backup_cipher_pass="kube-play-cipher",
                  k8s_postgres_backup_tls_cert=read(cert), k8s_postgres_backup_tls_key=read(key),
                  k8s_postgres_pv={}, k8s_postgres_client_namespaces=[], k8s_postgres_client_cidrs=["10.89.0.0/16"],
                  k8s_postgres_backup_drill_expect_rows={"app.public.orders": ROWS})
    objects = list(rendered_objects(base / "deploy", **inputs)[1].values())
    objects += [o for o in rendered_objects(base / "restore", os.path.join(ROOT, "playbooks", "k8s_restore.yml"),
                                            **inputs)[1].values() if o["kind"] == "Job"]
    neon_inputs = dict(inputs)
    neon_inputs.update(k8s_postgres_mode="neon", k8s_postgres_name="pooler", k8s_postgres_neon_host=NEON_HOST,
                       k8s_postgres_neon_ca=read(tls["ca.crt"]))
    neon = list(rendered_objects(base / "neon", **neon_inputs)[1].values())
    podman("network", "rm", "--force", NETWORK, check=False)
    # An interrupted run leaves its claim and ConfigMap volumes (the network's removal took its
    # pods): the fleet starts empty, as a new namespace would.
    for volume in ["data-postgres-0", *[o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]]:
        podman("volume", "rm", "--force", volume, check=False)
    podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    play = KubePlay(objects, str(base), NETWORK)
    s3 = None
    try:
        started = time.time()
        play.play("postgres-0", play.kind("StatefulSet")["spec"]["template"], {"data": "data-postgres-0"},
                  {S3_HOST: GATEWAY}, restart="OnFailure")
        ip = play.ip("postgres-0")
        # The bridge's gateway exists once a pod is on it; archive_command retries until then.
        s3 = MotoS3(tls, bucket="pgfleet-k8s", listen=GATEWAY, port=s3_port)
        yield {"play": play, "ip": ip, "tls": tls, "s3": s3, "started": started, "neon": neon, "base": base, "inputs": inputs,
               "hosts": {POD_HOST: ip, S3_HOST: GATEWAY}}
    finally:
        play.destroy()
        if s3:
            s3.stop()
        podman("network", "rm", "--force", NETWORK, check=False)
        shutil.rmtree(base, ignore_errors=True)


def connect(fleet, ip=None, user="app", password="app-kube-play-Pa55", sslmode="verify-full", timeout=300,
            host=SERVICE_HOST):
    deadline = time.time() + timeout
    while True:
        try:
            return psycopg2.connect(host=host, hostaddr=ip or fleet["ip"], port=5432, dbname="app", user=user,
                                    password=password, sslmode=sslmode, sslrootcert=fleet["tls"]["ca.crt"],
                                    connect_timeout=3)
        except psycopg2.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def query(conn, sql, *args):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def psql(play, sql, pod="postgres-0"):
    return podman("exec", f"{pod}-postgres", "psql", "-XAtq", "-d", "app", "-c", sql).stdout.strip()


def write_rows(fleet, first, last):
    """Orders FIRST..LAST through the Service as the app user; the table's fingerprint after."""
    conn = connect(fleet)
    conn.autocommit = True
    query(conn, "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(%s, %s) g", first, last)
    result = fingerprint(conn)
    conn.close()
    return result


def archive_now(play):
    """A WAL switch on postgres-0 (through its socket, as `kubectl exec` would: the superuser
    has no TCP way in), then wait until that segment is archived."""
    segment = psql(play, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.time() + 120
    while psql(play, f"SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver") != "t":
        assert time.time() < deadline, psql(play, "SELECT * FROM pg_stat_archiver")
        time.sleep(1)


def wait_promoted(conn):
    deadline = time.time() + 120
    while query(conn, "SELECT pg_is_in_recovery()")[0][0]:
        assert time.time() < deadline, "the restored cluster did not promote"
        time.sleep(1)


def fingerprint(conn):
    return query(conn, "SELECT count(*), sum(id), md5(string_agg(body, ',' ORDER BY id)) FROM orders")[0]


def test_database_accepts_tls_within_5_minutes_and_nothing_else(fleet):
    conn = connect(fleet)
    waited = time.time() - fleet["started"]
    print(f"kube play to the first TLS connection: {waited:.1f} s")
    assert waited < 300
    conn.autocommit = True
    assert query(conn, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0] is True
    assert query(conn, "SHOW server_version_num")[0][0].startswith(fleet["play"].kind("StatefulSet")["spec"]["template"]
                                                                   ["spec"]["containers"][0]["image"].rsplit(":", 1)[1])
    query(conn, "CREATE TABLE orders (id bigint PRIMARY KEY, body text NOT NULL)")
    query(conn, "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, %s) g", ROWS)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="no encryption|pg_hba"):
        connect(fleet, sslmode="disable", timeout=0)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(fleet, password="wrong", timeout=0)


def test_exporter_beside_it_reports_the_database_up(fleet):
    deadline = time.time() + 60
    while True:
        try:
            body = urllib.request.urlopen(f"http://{fleet['ip']}:9187/metrics", timeout=5).read().decode()
            # The host fleet's queries too (postgres-queries.yml from the ConfigMap).
            if "\npg_up 1" in body and "\npgfleet_archiver_failing" in body:
                break
        except OSError:
            pass
        assert time.time() < deadline, "pg_up is not 1 or pgfleet_archiver_failing is missing within 60 s"
        time.sleep(2)


def test_backup_job_backs_up_through_the_tls_server_to_s3(fleet):
    play = fleet["play"]
    job = play.kind("CronJob", "postgres-backup")["spec"]["jobTemplate"]["spec"]["template"]
    started = time.time()
    play.play("backup-1", job, {}, fleet["hosts"], restart="Never")
    code, logs = play.wait("backup-1", "backup", timeout=600)
    print(f"backup Job: {time.time() - started:.1f} s")
    assert code == 0, logs[-3000:]
    assert "backup command end: completed successfully" in logs, logs[-3000:]
    keys = fleet["s3"].keys("pgfleet/pgfleet/postgres/")
    assert any(k.endswith("backup.info") for k in keys) and any("/archive/main/" in k for k in keys), keys[:20]
    # Encrypted: no page of the table is readable in the bucket.
    name = next(k for k in keys if k.endswith("backup.info"))
    body = fleet["s3"].client.get_object(Bucket="pgfleet-k8s", Key=name)["Body"].read()
    assert b"[backup:current]" not in body, "backup.info is not encrypted"


def test_restore_drill_job_restores_recovers_and_checks_without_archiving(fleet):
    play = fleet["play"]
    job = play.kind("CronJob", "postgres-restore-drill")["spec"]["jobTemplate"]["spec"]["template"]
    play.play("drill-1", job, {}, fleet["hosts"], restart="Never")
    code, logs = play.wait("drill-1", "drill", timeout=600)
    assert code == 0, logs[-3000:]
    report = json.loads(logs[logs.index("{"):])
    print(f"restore drill: {report['steps']}, RTO {report['rto_seconds']} s")
    assert report["success"] is True and report["rows"] >= ROWS and report["databases"] >= 2, report
    # archive_mode off: the promoted scratch cluster's new timeline never reaches the bucket.
    assert not [k for k in fleet["s3"].keys("pgfleet/pgfleet/postgres/archive/") if os.path.basename(k).startswith("00000002")]


def test_data_survives_deleting_and_playing_the_pod_again(fleet):
    play = fleet["play"]
    conn = connect(fleet)
    before = fingerprint(conn)
    conn.close()
    started = time.time()
    play.delete("postgres-0")
    print(f"pod deleted in {time.time() - started:.1f} s")
    play.play("postgres-0", play.kind("StatefulSet")["spec"]["template"], {"data": "data-postgres-0"},
              {S3_HOST: GATEWAY}, restart="OnFailure")
    fleet["ip"] = play.ip("postgres-0")
    fleet["hosts"][POD_HOST] = fleet["ip"]
    conn = connect(fleet, timeout=120)
    assert fingerprint(conn) == before == (ROWS, ROWS * (ROWS + 1) // 2, before[2])
    conn.close()


def test_restore_job_restores_into_a_fresh_volume_with_every_row(fleet):
    play = fleet["play"]
    # Rows after the backup: the restored cluster must replay the archived WAL too.
    expected = write_rows(fleet, ROWS + 1, ROWS + 500)
    archive_now(play)
    # While a backup holds the repository (the backup Job's pod, its step a sleep), a restore
    # is refused at once, naming it, and writes nothing.
    busy = copy.deepcopy(play.kind("CronJob", "postgres-backup")["spec"]["jobTemplate"]["spec"]["template"])
    busy["spec"]["containers"][0]["args"] = ["sleep 20"]
    play.play("backup-busy", busy, {}, fleet["hosts"], restart="Never")
    lock = "pgfleet/pgfleet/postgres/pgfleet.lock"
    deadline = time.time() + 30
    while not fleet["s3"].keys(lock):
        assert time.time() < deadline, play.logs("backup-busy", "backup")
        time.sleep(0.2)
    play.play("restore-refused", play.kind("Job")["spec"]["template"], {"data": "postgres-restore"}, fleet["hosts"],
              restart="Never")
    code, logs = play.wait("restore-refused", "restore", timeout=60)
    assert code == 75 and "restore refused: a backup (pod backup-busy" in logs, logs[-2000:]
    assert play.wait("backup-busy", "backup", timeout=60)[0] == 0 and not fleet["s3"].keys(lock)
    play.delete("restore-refused")
    started = time.time()
    play.play("restore", play.kind("Job")["spec"]["template"], {"data": "postgres-restore"}, fleet["hosts"],
              restart="Never")
    code, logs = play.wait("restore", "restore", timeout=900)
    print(f"restore Job: {time.time() - started:.1f} s")
    assert code == 0, logs[-3000:]
    # A database pod on the restored claim (the StatefulSet's template, another name).
    play.play("restored-0", play.kind("StatefulSet")["spec"]["template"], {"data": "postgres-restore"},
              {S3_HOST: GATEWAY}, restart="OnFailure")
    restored = connect(fleet, ip=play.ip("restored-0"), timeout=300)
    wait_promoted(restored)
    assert fingerprint(restored) == expected
    restored.close()
    # A side restore archives nothing: no timeline of its own in the running cluster's repository.
    assert not [k for k in fleet["s3"].keys("pgfleet/pgfleet/postgres/archive/") if os.path.basename(k).startswith("00000002")]
    # The same claim again: the Job refuses to write over a cluster.
    play.delete("restored-0")
    play.delete("restore")
    play.play("restore", play.kind("Job")["spec"]["template"], {"data": "postgres-restore"}, fleet["hosts"],
              restart="Never")
    code, logs = play.wait("restore", "restore", timeout=120)
    assert code == 1 and "holds a cluster already: nothing restored" in logs, logs[-2000:]


def test_point_in_time_restore_stops_at_the_target(fleet):
    """Rows committed before the target come back, rows after it do not."""
    play = fleet["play"]
    before = write_rows(fleet, ROWS + 501, ROWS + 600)
    target = psql(play, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(1.5)
    write_rows(fleet, ROWS + 601, ROWS + 700)
    archive_now(play)
    (fleet["base"] / "pitr").mkdir()
    objects = rendered_objects(fleet["base"] / "pitr", os.path.join(ROOT, "playbooks", "k8s_restore.yml"),
                               **dict(fleet["inputs"], k8s_postgres_restore_target=target,
                                      k8s_postgres_restore_claim="postgres-pitr"))[1].values()
    (job,) = [o for o in objects if o["kind"] == "Job"]
    play.play("pitr", job["spec"]["template"], {"data": "postgres-pitr"}, fleet["hosts"], restart="Never")
    code, logs = play.wait("pitr", "restore", timeout=900)
    assert code == 0, logs[-3000:]
    play.play("pitr-0", play.kind("StatefulSet")["spec"]["template"], {"data": "postgres-pitr"},
              {S3_HOST: GATEWAY}, restart="OnFailure")
    restored = connect(fleet, ip=play.ip("pitr-0"), timeout=300)
    wait_promoted(restored)
    assert fingerprint(restored) == before, f"target {target}"
    restored.close()
    play.delete("pitr-0")


def test_neon_mode_pgbouncer_pools_over_tls_verify_full_to_the_endpoint(fleet):
    """Neon mode's PgBouncer pod (the Deployment's template) in front of a stand-in endpoint:
    the StatefulSet's pod under the endpoint's host name (no Neon service can be reached);
    then its logical dump Job's pod."""
    pooler = KubePlay(fleet["neon"], str(fleet["base"] / "neon"), NETWORK)
    try:
        pooler.play("pooler-1", pooler.kind("Deployment")["spec"]["template"], {}, {NEON_HOST: fleet["ip"]},
                    restart="Always")
        ip = pooler.ip("pooler-1")
        direct = connect(fleet)
        (rows,) = query(direct, "SELECT count(*) FROM orders")[0]
        direct.close()
        conn = connect(fleet, ip=ip, host=POOLER_HOST, timeout=60)
        conn.autocommit = True
        # The row count of the endpoint's table, and the endpoint's side of the connection is TLS.
        assert query(conn, "SELECT count(*) FROM orders")[0][0] == rows >= ROWS
        assert query(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0] is True
        conn.close()
        with pytest.raises(psycopg2.OperationalError):
            connect(fleet, ip=ip, host=POOLER_HOST, sslmode="disable", timeout=0)
        with pytest.raises(psycopg2.OperationalError, match="SASL authentication failed"):
            connect(fleet, ip=ip, host=POOLER_HOST, password="wrong", timeout=0)
        # Neon mode's backups: the logical dump CronJob's pod, to S3, encrypted.
        job = pooler.kind("CronJob", "pooler-logical-dump")["spec"]["jobTemplate"]["spec"]["template"]
        pooler.play("dump-1", job, {}, {NEON_HOST: fleet["ip"], S3_HOST: GATEWAY}, restart="Never")
        code, logs = pooler.wait("dump-1", "dump", timeout=300)
        assert code == 0, logs[-3000:]
        (key,) = [k for k in fleet["s3"].keys("pgfleet/pgfleet/pooler/app/") if k.endswith(".dump.gpg")]
        encrypted = fleet["s3"].client.get_object(Bucket="pgfleet-k8s", Key=key)["Body"].read()
        assert b"PGDMP" not in encrypted and b"orders" not in encrypted
        plain = subprocess.run(["gpg", "--batch", "--quiet", "--homedir", str(fleet["base"]), "--pinentry-mode", "loopback",
                                "--passphrase", "kube-play-cipher", "--decrypt"], input=encrypted, capture_output=True,
                               check=True).stdout
        assert plain.startswith(b"PGDMP") and b"orders" in plain, "not pg_dump's custom format of the database"
    finally:
        pooler.destroy()
