"""pgbackrest_stanza against real pgBackRest 2.45 repositories: posix and S3 (moto over TLS)."""

import json
import os
import shutil
import tempfile
import time

import pytest

from modules import run_module
from pgcluster import PgCluster
from services import BackRestRepo, MotoS3, make_tls


@pytest.fixture
def backrest():
    """A primary archiving into a fresh posix repository (the stanza not yet created)."""
    made = []

    def make(archive_conf=None, **repo_kw):
        """ARCHIVE_CONF: archive settings of the test's own ({cmd} is the right archive_command)."""
        primary = PgCluster(external_conf=True).init()
        repo = BackRestRepo(primary, **repo_kw)
        made.append((primary, repo))
        if archive_conf is None:
            repo.attach()
        elif archive_conf:
            primary.append_conf(archive_conf.format(cmd=repo.archive_command()))
        primary.start()
        return primary, repo

    yield make
    for primary, repo in made:
        primary.destroy()
        repo.destroy()


def stanza(repo, **kw):
    return run_module("pgbackrest_stanza", dict(dict(stanza=repo.stanza, config=repo.config), **kw))


def failed(result):
    assert result.get("failed"), result
    return result


def test_create_then_no_change(backrest):
    primary, repo = backrest()
    predicted = stanza(repo, state="present")
    assert predicted["changed"]
    assert predicted["commands"] == [f"pgbackrest --config={repo.config} --stanza=demo stanza-create"]
    assert predicted["info"]["exists"] and predicted["info"]["status"]["message"] == "no valid backups"
    assert predicted["diff"] == {"before": {"exists": False, "status": "missing stanza path", "db": []},
                                 "after": {"exists": True, "status": "no valid backups",
                                           "db": [{"system_id": predicted["info"]["db"][0]["system_id"],
                                                   "version": "15"}]}}
    again = stanza(repo, state="present")
    assert not again["changed"] and again["info"]["db"] == predicted["info"]["db"]


def test_check_mode_predicts_creation_without_running_it(backrest):
    primary, repo = backrest()
    result = run_module("pgbackrest_stanza", dict(stanza=repo.stanza, config=repo.config), check=True)
    assert result["changed"] and result["commands"][-1].endswith("stanza-create")
    assert not result["info"]["exists"]
    assert not os.path.exists(os.path.join(repo.base, "repo", "backup", "demo"))
    stanza(repo)
    assert not run_module("pgbackrest_stanza", dict(stanza=repo.stanza, config=repo.config), check=True)["changed"]


def test_info_summary_matches_a_real_backup(backrest):
    primary, repo = backrest()
    stanza(repo)
    primary.query("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10000) g")
    repo.run("--type=full", "backup")
    repo.run("--type=diff", "backup")
    raw = json.loads(repo.run("--output=json", "info"))[0]
    result = run_module("pgbackrest_info", dict(stanza=repo.stanza, config=repo.config))
    assert not result["changed"] and "commands" not in result
    info = result["info"]
    assert info["status"] == {"code": 0, "message": "ok"} and info["exists"] and not info["backup_running"]
    (repo1,) = info["repos"]
    assert repo1["key"] == 1 and repo1["backup_count"] == 2 and repo1["status"]["code"] == 0
    full, diff = repo1["last_backup"]["full"], repo1["last_backup"]["diff"]
    assert repo1["last_backup"]["incr"] is None
    assert full["label"] == raw["backup"][0]["label"] and full["label"].endswith("F")
    assert diff["label"] == raw["backup"][1]["label"] and "_" in diff["label"] and diff["label"].endswith("D")
    assert full["size"] == raw["backup"][0]["info"]["size"] > 1_000_000
    assert full["repo_size"] == raw["backup"][0]["info"]["repository"]["size"]
    assert full["stop_epoch"] == raw["backup"][0]["timestamp"]["stop"]
    assert 0 <= full["age_seconds"] < 300 and full["error"] is False
    assert full["stop"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(full["stop_epoch"]))
    assert info["archive"]["min"] == raw["archive"][0]["min"] and info["archive"]["max"] == raw["archive"][0]["max"]
    assert info["archive"]["min"] <= full["wal_start"] <= full["wal_stop"] <= info["archive"]["max"]
    system_id = primary.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert info["db"] == [{"id": 1, "repo_key": 1, "system_id": system_id, "version": "15"}]


def test_checked_passes_then_reports_archive_command_not_pgbackrest(backrest):
    primary, repo = backrest()
    stanza(repo)
    ok = stanza(repo, state="checked")
    assert not ok["changed"] and ok["commands"][-1].endswith("--stanza=demo check")
    primary.append_conf("archive_command = '/bin/true'\n")
    primary.reload()
    result = failed(stanza(repo, state="checked"))
    assert result["error_kind"] == "archive_command_not_pgbackrest" and result["error_code"] == 68
    assert "must contain pgbackrest" in result["msg"] and "archive-push %p" in result["remedy"]


def test_checked_reports_an_archive_timeout(backrest):
    primary, repo = backrest()
    stanza(repo)
    # archive_command calls pgBackRest, but for a repository that does not exist.
    primary.append_conf(f"archive_command = '{repo.archive_command()} --repo1-path=/nonexistent'\n")
    primary.reload()
    result = failed(stanza(repo, state="checked", options={"archive-timeout": 3}))
    assert result["error_kind"] == "archive_timeout" and "was not archived before the 3000ms timeout" in result["msg"]
    assert "pg_stat_archiver" in result["remedy"]


def test_reinitdb_mismatch_is_reported_with_its_remedy_then_upgraded(backrest):
    primary, repo = backrest()
    stanza(repo)
    old_id = primary.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    primary.stop()
    shutil.rmtree(primary.datadir)
    primary.init(fresh=True).start()  # the same path, a new system
    new_id = primary.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    for state in ("checked", "present"):
        result = failed(stanza(repo, state=state))
        assert result["error_kind"] == "system_identifier_mismatch", result
        assert "do not match the database" in result["msg"] and "state=upgraded" in result["remedy"]
    predicted = run_module("pgbackrest_stanza", dict(stanza=repo.stanza, config=repo.config, state="upgraded"),
                           check=True)
    assert predicted["changed"] and predicted["info"]["db"][-1]["system_id"] == old_id
    upgraded = stanza(repo, state="upgraded")
    assert upgraded["changed"] and upgraded["info"]["db"][-1]["system_id"] == new_id
    assert not stanza(repo, state="upgraded")["changed"]
    assert not run_module("pgbackrest_stanza", dict(stanza=repo.stanza, config=repo.config, state="upgraded"),
                          check=True)["changed"]
    assert not stanza(repo, state="checked").get("failed")


def test_absent_needs_force(backrest):
    primary, repo = backrest()
    stanza(repo)
    result = failed(stanza(repo, state="absent"))
    assert "without force=true" in result["msg"] and result["commands"] == []
    assert run_module("pgbackrest_info", dict(stanza=repo.stanza, config=repo.config))["info"]["exists"]
    deleted = stanza(repo, state="absent", force=True)
    assert deleted["changed"] and deleted["commands"][-1].endswith("stanza-delete --force")
    assert not deleted["info"]["exists"]
    assert not stanza(repo, state="absent", force=True)["changed"]
    assert stanza(repo)["changed"]  # and it can be created again


@pytest.mark.parametrize("name", ["../etc", "demo main", "-demo", "x" * 65, "dém"])
def test_odd_stanza_names_are_refused(name):
    result = failed(run_module("pgbackrest_stanza", dict(stanza=name)))
    assert repr(name) in result["msg"] and "not a valid stanza name" in result["msg"]


def test_bad_option_name_is_refused(backrest):
    primary, repo = backrest()
    result = failed(stanza(repo, options={"repo1-path; rm": "x"}))
    assert "not a pgBackRest option name" in result["msg"]


def test_runs_as_the_repository_owner(backrest):
    primary, repo = backrest()
    stanza(repo)
    owners = {os.stat(os.path.join(root, f)).st_uid
              for root, dirs, files in os.walk(os.path.join(repo.base, "repo")) for f in files}
    assert owners == {os.stat(primary.datadir).st_uid}


@pytest.fixture(scope="module")
def s3():
    tls_dir = tempfile.mkdtemp(prefix="pgfleet-tls-", dir="/var/tmp")
    os.chmod(tls_dir, 0o755)
    tls = make_tls(tls_dir)
    os.chmod(tls["ca.crt"], 0o644)
    server = MotoS3(tls)
    yield server
    server.stop()
    shutil.rmtree(tls_dir, ignore_errors=True)


def test_s3_repository_encrypted(backrest, s3):
    primary, repo = backrest(s3=s3.repo_options(), cipher_pass="correct horse battery staple")
    created = stanza(repo)
    assert created["changed"] and created["info"]["cipher"] == "aes-256-cbc"
    repo.run("--type=full", "backup")
    info = stanza(repo, state="checked")["info"]
    assert info["repos"][0]["last_backup"]["full"]["error"] is False
    assert info["repos"][0]["cipher"] == "aes-256-cbc"
    assert not stanza(repo)["changed"]
    # What is in the bucket is ciphertext: the manifest does not show its own keys.
    import boto3
    client = boto3.client("s3", endpoint_url=f"https://127.0.0.1:{s3.port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing", verify=s3.tls["ca.crt"])
    key = f"pgbackrest/backup/demo/{info['repos'][0]['last_backup']['full']['label']}/backup.manifest"
    body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    assert b"backup-label" not in body and b"[backup]" not in body
    assert stanza(repo, state="absent", force=True)["changed"]


def test_s3_repository_unreachable(backrest, s3):
    primary, repo = backrest(s3=dict(s3.repo_options(), port=1))
    result = failed(stanza(repo, state="checked", options={"io-timeout": 1}))
    assert result["error_kind"] == "repo_unreachable", result
    assert "S3 endpoint" in result["remedy"]


# ---- issue 19: a damaged repository is diagnosed as such, in check mode too -------------------

def info_dir(repo, side):
    return os.path.join(repo.base, "repo", side, repo.stanza)


def both_modes(repo, **kw):
    """The check-mode prediction and the real run, in that order."""
    args = dict(stanza=repo.stanza, config=repo.config, **kw)
    return run_module("pgbackrest_stanza", args, check=True), run_module("pgbackrest_stanza", args)


@pytest.mark.parametrize("side", ["archive", "backup"])
def test_info_file_and_its_copy_missing_is_corruption_in_both_modes(backrest, side):
    primary, repo = backrest()
    stanza(repo)
    for name in (f"{side}.info", f"{side}.info.copy"):
        os.remove(os.path.join(info_dir(repo, side), name))
    predicted, real = both_modes(repo)
    for result in (predicted, real):
        failed(result)
        assert result["error_kind"] == "repo_corrupt" and result["error_code"] == 55, result
        assert f"{side}.info and {side}.info.copy are missing on repo1" in result["msg"]
        assert "verify" in result["remedy"] and "fresh repository" in result["remedy"]
        assert "endpoint" not in result["remedy"]
    assert real["commands"] == []  # refused before stanza-create could write anything
    assert not os.path.exists(os.path.join(info_dir(repo, side), f"{side}.info"))


def test_garbage_in_the_info_files_is_corruption(backrest):
    primary, repo = backrest()
    stanza(repo)
    for name in ("archive.info", "archive.info.copy"):
        with open(os.path.join(info_dir(repo, "archive"), name), "w") as f:
            f.write("garbage\n")
    for result in both_modes(repo) + both_modes(repo, state="checked"):
        failed(result)
        assert result["error_kind"] == "repo_corrupt" and result["error_code"] == 29, result
        assert "FormatError" in result["msg"] and "verify" in result["remedy"]


def test_repair_from_the_copy_is_a_change_with_a_warning(backrest):
    primary, repo = backrest()
    stanza(repo)
    os.remove(os.path.join(info_dir(repo, "archive"), "archive.info"))
    predicted, real = both_modes(repo)
    for result, verb in ((predicted, "would restore"), (real, "restored")):
        assert not result.get("failed") and result["changed"], result
        assert any(f"{verb} archive.info on repo1" in w and "verify" in w for w in result["warnings"]), result
    assert sorted(os.listdir(info_dir(repo, "archive"))) == ["archive.info", "archive.info.copy"]
    again = stanza(repo)
    assert not again["changed"] and again["warnings"] == []


def test_check_mode_predicts_a_system_identifier_mismatch(backrest):
    primary, repo = backrest()
    stanza(repo)
    primary.stop()
    shutil.rmtree(primary.datadir)
    primary.init(fresh=True).start()
    predicted = failed(run_module("pgbackrest_stanza", dict(stanza=repo.stanza, config=repo.config), check=True))
    assert predicted["error_kind"] == "system_identifier_mismatch" and "state=upgraded" in predicted["remedy"]


# ---- issue 19: present refuses a cluster that cannot archive into the stanza -----------------

@pytest.mark.parametrize("conf, kind, words", [
    ("", "archive_disabled", "archive_mode is off"),
    ("archive_mode = on\narchive_command = '/bin/true'\n", "archive_command_not_pgbackrest", "must contain pgbackrest"),
    ("archive_mode = on\narchive_command = 'pgbackrest --stanza=other archive-push %p'\n",
     "archive_command_not_pgbackrest", "archives into stanza 'other', not 'demo'"),
])
def test_present_refuses_a_cluster_that_cannot_archive(backrest, conf, kind, words):
    primary, repo = backrest(archive_conf=conf)
    predicted, real = both_modes(repo)
    for result in (predicted, real):
        failed(result)
        assert result["error_kind"] == kind and words in result["msg"], result
    assert real["commands"] == []
    assert not os.path.exists(info_dir(repo, "archive"))  # nothing was created
    # The documented opt-out creates it anyway.
    created = stanza(repo, archive_check=False)
    assert created["changed"] and created["info"]["exists"]


def test_present_sees_archive_mode_waiting_for_a_restart(backrest):
    primary, repo = backrest(archive_conf="")
    primary.append_conf(f"archive_mode = on\narchive_command = '{repo.archive_command()}'\n")
    primary.reload()
    result = failed(stanza(repo))
    assert result["error_kind"] == "archive_disabled" and "waiting for a restart" in result["msg"], result
