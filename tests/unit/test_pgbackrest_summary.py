"""pgBackRest's JSON info and error text, read by pgbackrest_stanza (pure functions)."""

import pytest

from ansible_collections.pgfleet.core.plugins.module_utils.pgbackrest import (
    explain_error, option_env, summarize_info,
)


def backup(label, kind, stop, repo=1, error=False, size=100):
    return {"label": label, "type": kind, "error": error, "database": {"id": 1, "repo-key": repo},
            "timestamp": {"start": stop - 10, "stop": stop}, "info": {"size": size, "delta": size,
            "repository": {"size": size // 2, "delta": size // 2}},
            "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"}}


TWO_REPOS = {
    "name": "main", "cipher": "mixed",
    "status": {"code": 0, "message": "ok", "lock": {"backup": {"held": True}}},
    "db": [{"id": 1, "repo-key": 1, "system-id": 7710871023275486296, "version": "15"}],
    "repo": [{"key": 1, "cipher": "none", "status": {"code": 0, "message": "ok"}},
             {"key": 2, "cipher": "aes-256-cbc", "status": {"code": 2, "message": "no valid backups"}}],
    "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1",
                 "min": "000000010000000000000001", "max": "00000002000000000000000A"},
                {"database": {"id": 1, "repo-key": 2}, "id": "15-1",
                 "min": "000000010000000000000005", "max": "000000010000000000000009"}],
    "backup": [backup("20261101-010000F", "full", 1000), backup("20261108-010000F", "full", 5000),
               backup("20261108-010000F_20261109-010000D", "diff", 6000, error=True),
               backup("20261108-010000F_20261109-020000I", "incr", 6500)],
}


def test_newest_backup_of_each_type_per_repository():
    info = summarize_info(TWO_REPOS, now=10000)
    one, two = info["repos"]
    assert one["last_backup"]["full"]["label"] == "20261108-010000F"
    assert one["last_backup"]["full"]["age_seconds"] == 5000
    assert one["last_backup"]["full"]["stop"] == "1970-01-01T01:23:20Z"
    assert one["last_backup"]["diff"]["error"] is True
    assert one["last_backup"]["incr"]["repo_size"] == 50
    assert one["backup_count"] == 4
    assert two["last_backup"] == {"full": None, "diff": None, "incr": None} and two["cipher"] == "aes-256-cbc"


def test_wal_range_sorts_by_timeline_then_position():
    info = summarize_info(TWO_REPOS, now=10000)
    assert info["archive"] == {"min": "000000010000000000000001", "max": "00000002000000000000000A"}
    assert info["repos"][1]["archive"] == {"min": "000000010000000000000005", "max": "000000010000000000000009"}


def test_status_and_identifiers():
    info = summarize_info(TWO_REPOS, now=10000)
    assert info["exists"] and info["backup_running"] and info["status"] == {"code": 0, "message": "ok"}
    assert info["db"][0]["system_id"] == "7710871023275486296"  # a string: no float rounding downstream


@pytest.mark.parametrize("code", [1, 3])
def test_missing_stanza(code):
    info = summarize_info({"name": "x", "status": {"code": code, "message": "missing"}}, now=0)
    assert not info["exists"] and info["repos"] == [] and info["archive"] == {"min": None, "max": None}


@pytest.mark.parametrize("stderr, kind", [
    ("ERROR: [028]: backup and archive info files exist but do not match the database\n"
     "       HINT: is this the correct stanza?", "system_identifier_mismatch"),
    ("ERROR: [068]: archive_command 'true' must contain pgbackrest", "archive_command_not_pgbackrest"),
    ("ERROR: [087]: archive_mode must be enabled", "archive_disabled"),
    ("ERROR: [082]: WAL segment 000000010000000000000002 was not archived before the 5000ms timeout",
     "archive_timeout"),
    ("WARN: something\nERROR: [101]: TLS error [1:167772454] unexpected eof while reading", "repo_unreachable"),
    # A missing, unreadable or garbled info file is damage in a reachable repository (issue 19).
    ("ERROR: [055]: backup.info exists but archive.info is missing on repo1", "repo_corrupt"),
    ("ERROR: [029]: unable to load info file '/r/archive/main/archive.info' or ...copy", "repo_corrupt"),
    ("ERROR: [026]: invalid checksum in '/r/backup/main/backup.info'", "repo_corrupt"),
    ("ERROR: [028]: invalid format in '/r/backup/main/backup.info'", "repo_corrupt"),
    ("ERROR: [095]: unable to decrypt: the passphrase may be wrong", "repo_cipher"),
    ("ERROR: [056]: unable to connect to 'dbname='postgres' port=5432'", "postgres_unreachable"),
    ("ERROR: [062]: stop file exists for stanza main", "stanza_stopped"),
    ("ERROR: [050]: unable to acquire lock", "lock_held"),
    ("ERROR: [031]: option 'x' not valid for command 'info'", None),
])
def test_errors_are_classified_by_code(stderr, kind):
    code, found, message, remedy = explain_error(stderr)
    assert found == kind and message.startswith("ERROR: [")
    assert (remedy is None) == (kind is None)
    assert code == int(message[8:11])


def test_text_without_an_error_line():
    assert explain_error("segfault\n") == (None, None, "segfault", None)


def test_options_become_environment_variables():
    assert option_env({"archive-timeout": 3, "start-fast": True, "repo1-path": "/b", "compress": False}) == {
        "PGBACKREST_ARCHIVE_TIMEOUT": "3", "PGBACKREST_START_FAST": "y", "PGBACKREST_REPO1_PATH": "/b",
        "PGBACKREST_COMPRESS": "n"}


@pytest.mark.parametrize("options", [{"Repo1-Path": "x"}, {"repo1-path; rm -rf /": "x"}, {"--x": 1},
                                     {"repo1-path": ["a", "b"]}])
def test_bad_options_raise(options):
    with pytest.raises(ValueError, match="options: "):
        option_env(options)
