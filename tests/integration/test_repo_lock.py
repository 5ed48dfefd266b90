"""pgfleet-repo-lock (k8s_postgres's one-job-at-a-time lock on a backup repository) against
moto's S3 over TLS on loopback: held while its command runs and removed after, the command's
exit status passed on, a second taker refused at once naming the holder, an abandoned lock
taken over by exactly one of two takers."""

import json
import os
import subprocess
import sys
import time

import pytest

from services import MotoS3, make_tls

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "roles", "k8s_postgres", "files", "pgfleet-repo-lock")
KEY = "pgfleet/ns/postgres/pgfleet.lock"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    base = tmp_path_factory.mktemp("lock")
    server = MotoS3(make_tls(str(base)), bucket="pgfleet-lock")
    config = base / "repo-lock.json"
    config.write_text(json.dumps({"bucket": "pgfleet-lock", "key": KEY, "endpoint_url": f"https://localhost:{server.port}",
                                  "region": "us-east-1", "ca_file": server.tls["ca.crt"]}))
    server.config = str(config)
    yield server
    server.stop()


def locked(s3, what, *command, host="pod-a", wait=True):
    argv = [sys.executable, SCRIPT, "--config", s3.config, "--what", what, "--", *command]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", HOSTNAME=host)
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def holder(s3):
    keys = s3.keys(KEY)
    return json.loads(s3.client.get_object(Bucket=s3.bucket, Key=KEY)["Body"].read()) if keys else None


def test_held_while_the_command_runs_then_gone_and_its_status_passed_on(s3):
    seen = os.path.join(os.path.dirname(s3.config), "seen.json")
    probe = (f"import boto3, json; c = boto3.client('s3', endpoint_url='https://localhost:{s3.port}', region_name='us-east-1', "
             f"verify='{s3.tls['ca.crt']}'); open('{seen}', 'w').write(c.get_object(Bucket='pgfleet-lock', Key='{KEY}')"
             "['Body'].read().decode()); raise SystemExit(3)")
    proc = locked(s3, "backup", sys.executable, "-c", probe)
    assert proc.returncode == 3, proc.stderr
    with open(seen, encoding="utf-8") as f:
        assert json.load(f)["what"] == "backup", "the lock was not held while the command ran"
    assert holder(s3) is None


def test_a_second_job_is_refused_at_once_naming_the_holder(s3):
    first = locked(s3, "backup", "sleep", "4", host="postgres-backup-29433", wait=False)
    deadline = time.time() + 10
    while holder(s3) is None:
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    started = time.time()
    second = locked(s3, "restore", "true", host="postgres-restore")
    assert second.returncode == 75 and time.time() - started < 10
    assert "restore refused: a backup (pod postgres-backup-29433, since" in second.stderr, second.stderr
    assert first.wait(30) == 0 and holder(s3) is None
    assert locked(s3, "restore", "true").returncode == 0


def test_an_abandoned_lock_is_taken_over_by_exactly_one(s3):
    stale = {"id": "killed-job", "what": "backup", "pod": "gone", "since": 0, "expires": 1}
    s3.client.put_object(Bucket=s3.bucket, Key=KEY, Body=json.dumps(stale).encode())
    takers = [locked(s3, "restore drill", "sleep", "3", host=f"drill-{n}", wait=False) for n in range(2)]
    results = [(t.wait(30), t.communicate()[1]) for t in takers]
    assert sorted(code for code, err in results) == [0, 75], results
    assert any("took over an expired lock of backup (gone)" in err for code, err in results if code == 0), results
    assert holder(s3) is None
