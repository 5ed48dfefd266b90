"""redis_persistence against real redis-server 7.0 processes (running as the redis user)."""

import os
import shutil
import tempfile
import threading
import time

import pytest

from modules import run_module
from redisserver import RedisServer

KEYS = 100_000


@pytest.fixture
def server():
    servers = []

    def make(**kw):
        srv = RedisServer(**kw)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        srv.destroy()


def persistence(srv, check=False, **kw):
    return run_module("redis_persistence", dict(login_port=srv.port, **kw), check=check)


def fill(client, count, prefix="key"):
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:{i}", i)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def test_switch_to_aof_live_then_restart_keeps_every_key(server):
    srv = server()
    client = srv.client()
    fill(client, KEYS)
    result = persistence(srv, appendonly=True, appendfsync="everysec", save=[])
    assert result["changed"]
    # appendfsync everysec is already the default: not sent.
    assert result["commands"] == ["CONFIG REWRITE", 'CONFIG SET save ""', "CONFIG SET appendonly yes",
                                  "CONFIG REWRITE"], result["commands"]
    assert result["aof_rewrite_seconds"] > 0
    assert result["settings"]["appendonly"] == "yes" and result["settings"]["save"] == ""
    with open(srv.config, encoding="utf-8") as f:
        text = f.read()
    assert "appendonly yes" in text and "save 3600 1" not in text
    # No RDB file was ever written: after the restart the keys can only come from the AOF.
    assert not os.path.exists(os.path.join(srv.dir, "dump.rdb"))
    os.kill(srv.proc.pid, 9)  # not even a save at shutdown
    srv.proc.wait(10)
    srv.start()
    assert client.dbsize() == KEYS
    assert client.get(f"key:{KEYS - 1}") == str(KEYS - 1)


def test_second_run_and_check_mode_change_nothing(server):
    srv = server()
    args = dict(appendonly=True, appendfsync="everysec", save=["3600 1", "300 100"],
                auto_aof_rewrite_min_size="64mb", aof_use_rdb_preamble=True)
    predicted = persistence(srv, check=True, **args)
    assert predicted["changed"] and "CONFIG SET appendonly yes" in predicted["commands"]
    assert srv.client().config_get("appendonly")["appendonly"] == "no"  # check mode changed nothing
    assert predicted["diff"]["after"]["appendonly"] == "yes" and predicted["diff"]["before"]["appendonly"] == "no"
    assert persistence(srv, **args)["changed"]
    again = persistence(srv, **args)
    assert not again["changed"] and again["commands"] == []
    assert not persistence(srv, check=True, **args)["changed"]
    assert again["settings"]["save"] == "3600 1 300 100"
    assert again["settings"]["auto-aof-rewrite-min-size"] == str(64 * 1024 * 1024)


def test_snapshot_after_a_change(server):
    srv = server()
    srv.client().set("k", "v")
    result = persistence(srv, save=["900 1"], snapshot=True)
    assert result["commands"][-2:] == ["BGSAVE", "CONFIG REWRITE"]
    assert os.path.exists(os.path.join(srv.dir, "dump.rdb"))
    assert not persistence(srv, save=["900 1"], snapshot=True)["changed"]


@pytest.mark.parametrize("args, message", [
    (dict(appendfsync="sometimes"), "appendfsync"),
    (dict(save=["every hour"]), "save: 'every hour' is not '<seconds> <changes>'"),
    (dict(save=["0 1"]), "save: '0 1'"),
    (dict(auto_aof_rewrite_min_size="lots"), "auto_aof_rewrite_min_size: 'lots' is not a size"),
    (dict(dbfilename="../dump.rdb"), "dbfilename: '../dump.rdb' must be a file name"),
    (dict(dir="/nonexistent/redis"), "No such file or directory"),
])
def test_bad_input_changes_nothing(server, args, message):
    srv = server(extra="enable-protected-configs local\n")
    before = srv.client().config_get("*")
    result = persistence(srv, appendonly=True, **args)
    assert result.get("failed") and message in result["msg"], result
    assert srv.client().config_get("*") == before


def test_dir_is_protected_by_default(server):
    srv = server()
    result = persistence(srv, dir=os.path.join(srv.base, "elsewhere"), appendonly=True)
    assert result.get("failed") and "refuses to change dir at run time" in result["msg"], result
    assert srv.client().config_get("appendonly")["appendonly"] == "no"


def test_unwritable_dir_is_refused_and_put_back(server):
    srv = server(extra="enable-protected-configs local\n")
    srv.client().set("k", "v")
    locked = os.path.join(srv.base, "locked")
    os.mkdir(locked, 0o755)  # root's: Redis (the redis user) can enter it, not write in it
    before = srv.client().config_get("*")
    result = persistence(srv, dir=locked, appendonly=True)
    assert result.get("failed") and f"Redis cannot write a snapshot to '{locked}'" in result["msg"], result
    after = srv.client().config_get("*")
    assert after == before and after["dir"] == srv.dir and after["appendonly"] == "no"
    with open(srv.config, encoding="utf-8") as f:
        assert locked not in f.read()


def test_moving_dir_writes_the_data_there(server):
    srv = server(extra="enable-protected-configs local\n")
    fill(srv.client(), 1000)
    target = os.path.join(srv.base, "moved")
    os.mkdir(target, 0o750)
    os.chown(target, os.stat(srv.dir).st_uid, os.stat(srv.dir).st_gid)
    assert persistence(srv, dir=target, appendonly=True)["changed"]
    srv.kill9()
    srv.start()
    assert srv.client().config_get("dir")["dir"] == target and srv.client().dbsize() == 1000


def test_cannot_persist_is_refused_before_any_change(server):
    srv = server()
    os.chmod(srv.conf_dir, 0o550)  # Redis can no longer write its config directory
    result = persistence(srv, appendonly=True)
    assert result.get("failed") and "CONFIG REWRITE" in result["msg"], result
    assert srv.client().config_get("appendonly")["appendonly"] == "no"


@pytest.fixture
def tls():
    from services import make_tls
    directory = tempfile.mkdtemp(prefix="pgfleet-tls-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    yield make_tls(directory)
    shutil.rmtree(directory, ignore_errors=True)


def test_acl_user_over_tls(server, tls):
    for name in tls.values():
        os.chmod(name, 0o644)
    tls_port = __import__("pgcluster").free_port()
    srv = server(extra=f"tls-port {tls_port}\ntls-cert-file {tls['server.crt']}\ntls-key-file {tls['server.key']}\n"
                       f"tls-ca-cert-file {tls['ca.crt']}\ntls-auth-clients no\n"
                       "user ops on >ops-Secret-1 ~* &* +@all\n")
    args = dict(login_port=tls_port, login_user="ops", login_password="ops-Secret-1", tls=True,
                tls_ca_cert=tls["ca.crt"], appendonly=True)
    result = run_module("redis_persistence", args)
    assert result["changed"] and result["settings"]["appendonly"] == "yes"
    wrong = run_module("redis_persistence", dict(args, login_password="not-it-42"))
    assert wrong.get("failed") and "not-it-42" not in str(wrong)


def test_kill_9_with_everysec_loses_nothing_acknowledged_2s_before(server):
    srv = server()
    assert persistence(srv, appendonly=True, appendfsync="everysec", save=[])["changed"]
    client = srv.client()
    acked = []  # (monotonic time of the acknowledgement, key)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            try:
                client.set(f"w:{i}", i)
            except Exception:
                return
            acked.append((time.monotonic(), f"w:{i}"))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(4)
    killed_at = time.monotonic()
    srv.kill9()
    stop.set()
    thread.join(10)
    srv.start()
    must_survive = [key for at, key in acked if at < killed_at - 2]
    assert len(must_survive) > 1000, "the writer was too slow to mean anything"
    pipe = srv.client().pipeline(transaction=False)
    for key in must_survive:
        pipe.exists(key)
    missing = [key for key, found in zip(must_survive, pipe.execute()) if not found]
    assert missing == [], f"{len(missing)} keys acknowledged more than 2 s before the kill were lost"
