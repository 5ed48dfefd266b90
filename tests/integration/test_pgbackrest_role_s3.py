"""The pgbackrest role's configuration with its off-site option: the role's own
pgbackrest.conf template, rendered for a PostgreSQL host whose repositories are an S3
bucket (moto behind TLS) with 30-day time retention, drives a real cluster's archiving,
a full backup, expiry and a restore; what lands in the bucket is ciphertext."""

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import boto3
import jinja2
import pytest

from pgcluster import PgCluster
from services import MotoS3, make_tls

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "pgbackrest")
CIPHER = "off-site passphrase 7f3a"


@pytest.fixture(scope="module")
def s3():
    tls_dir = tempfile.mkdtemp(prefix="pgfleet-tls-", dir="/var/tmp")
    os.chmod(tls_dir, 0o755)
    server = MotoS3(make_tls(tls_dir), bucket="pgfleet-offsite")
    yield server
    server.stop()
    shutil.rmtree(tls_dir, ignore_errors=True)


def render(cluster, s3, work, path):
    """The role's template for side 'pg' with the role's defaults and one S3 repository at PATH."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.get_template("pgbackrest.conf.j2").render(
        ansible_managed="test", pgbackrest_conf_side="pg", pgbackrest_stanza="offsite",
        pgbackrest_repos=[dict(type="s3", bucket=s3.bucket, endpoint="localhost", port=s3.port, region="us-east-1",
                               key="testing", key_secret="testing", uri_style="path", path=path, ca_file=s3.tls["ca.crt"],
                               cipher_pass=CIPHER, retention_full=30, retention_full_type="time")],
        pgbackrest_repo_host="repo1", pgbackrest_tls_port=8432, pgbackrest_compress_type="zst",
        pgbackrest_compress_level=3, pgbackrest_process_max=2, pgbackrest_archive_timeout=30,
        pgbackrest_archive_async=True, pgbackrest_spool_path=os.path.join(work, "spool"),
        pgbackrest_tls_listen_address="127.0.0.1", pgbackrest_pg_path=cluster.datadir,
        pgbackrest_pg_port=cluster.port, pgbackrest_pg_socket_path="/var/run/postgresql")
    path = os.path.join(work, "pgbackrest.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path, text


@pytest.fixture
def offsite(s3):
    pw = pwd.getpwnam("postgres")
    work = tempfile.mkdtemp(prefix="pgfleet-offsite-", dir="/var/tmp")
    cluster = PgCluster().init()
    # The role's pg side reaches PostgreSQL on Debian's socket directory.
    cluster.append_conf(f"unix_socket_directories = '{cluster.socket_dir},/var/run/postgresql'\n")
    # A repository path per test: clusters copied from one template share a system identifier
    # and WAL file names, which one repository would refuse as a conflicting archive.
    prefix = "pgbackrest-" + os.path.basename(work)
    config, text = render(cluster, s3, work, "/" + prefix)
    cluster.append_conf(f"archive_mode = on\narchive_command = 'pgbackrest --config={config} "
                        "--stanza=offsite archive-push %p'\n")
    for name in ("spool", "log", "lock"):
        os.mkdir(os.path.join(work, name))
    subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", work], check=True)

    def backrest(*args, check=True):
        env = dict(os.environ, PGBACKREST_LOG_PATH=f"{work}/log", PGBACKREST_LOCK_PATH=f"{work}/lock")
        proc = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={config}",
                               "--stanza=offsite", *args], capture_output=True, text=True, env=env, check=False)
        assert not check or proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    cluster.start()
    try:
        yield cluster, backrest, text, prefix
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


def test_role_config_backs_up_to_s3_encrypted_and_restores(offsite, s3):
    cluster, backrest, text, prefix = offsite
    assert "repo1-type=s3" in text and "repo1-retention-full-type=time" in text and "repo1-retention-full=30" in text
    assert "repo1-cipher-type=aes-256-cbc" in text and "archive-async=y" in text
    backrest("stanza-create")
    backrest("check")  # a WAL segment archived through the async spool into the bucket
    cluster.query("CREATE TABLE offsite_probe AS SELECT g AS id FROM generate_series(1, 4321) g")
    backrest("backup", "--type=full")
    backrest("expire")  # time retention keeps a backup younger than 30 days
    info = json.loads(backrest("info", "--output=json").stdout)[0]
    assert info["status"]["code"] == 0, info["status"]
    assert [b["type"] for b in info["backup"]] == ["full"]
    assert info["repo"][0]["cipher"] == "aes-256-cbc"

    client = boto3.client("s3", endpoint_url=f"https://localhost:{s3.port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing", verify=s3.tls["ca.crt"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/")["Contents"]]
    assert any("/archive/offsite/" in k for k in keys) and any("/backup/offsite/" in k for k in keys), keys
    info_file = [k for k in keys if k.endswith("/backup/offsite/backup.info")][0]
    body = client.get_object(Bucket=s3.bucket, Key=info_file)["Body"].read()
    assert b"[backup:current]" not in body and b"backrest-format" not in body  # ciphertext, not pgBackRest's ini

    # And back: the cluster restored from the bucket has the rows of the backup.
    cluster.stop()
    backrest("restore", "--delta", "--type=immediate", "--target-action=promote")
    cluster.start()
    assert cluster.query("SELECT count(*) FROM offsite_probe") == [(4321,)]
