"""The pgBackRest progress probe, run by a real shell and awk over detail-log excerpts."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "filter"))
from pgbackrest_progress import pgbackrest_progress  # noqa: E402  pylint: disable=wrong-import-position

EARLIER_RUN = """\
2026-12-07 01:00:00.000 P00   INFO: backup command begin 2.54.2: --stanza=main
-------------------PROCESS START-------------------
2026-12-07 01:00:01.000 P01 DETAIL: backup file /srv/pgdata/base/1/1259 (96KB, 12.50%) checksum 0a
2026-12-07 01:00:02.000 P01 DETAIL: backup file /srv/pgdata/base/1/2608 (80KB, 100.00%) checksum 0b
"""


def probe(tmp_path, text, done="copied"):
    log = tmp_path / "main backup.log"  # a space: the path is quoted
    log.write_text(text)
    return subprocess.run(["sh", "-c", pgbackrest_progress(str(log), done)], capture_output=True, text=True, check=True).stdout


def test_the_newest_percent_since_the_last_start(tmp_path):
    text = EARLIER_RUN + "-------------------PROCESS START-------------------\n" + \
        "2026-12-07 02:00:01.000 P01 DETAIL: backup file /x/base/1/1259 (96KB, 3.10%) checksum 0a\n" + \
        "2026-12-07 02:00:02.000 P02 DETAIL: backup file /x/base/1/2608 (80KB, 41.83%) checksum 0b\n"
    assert probe(tmp_path, text) == "41.83% copied\n"


def test_a_run_without_a_file_yet_is_starting_not_the_last_run(tmp_path):
    assert probe(tmp_path, EARLIER_RUN + "-------------------PROCESS START-------------------\n") == "starting\n"
    assert probe(tmp_path, "") == "starting\n"


def test_a_quote_in_the_word_stays_text(tmp_path):
    out = probe(tmp_path, EARLIER_RUN, done='restored"; system("touch /tmp/x") "')
    assert out == "100.00% restored; system(touch /tmp/x) \n" and not os.path.exists("/tmp/x")
