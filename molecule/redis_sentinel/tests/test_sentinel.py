"""A Redis set under Sentinel: one master, two streaming read-only replicas, three
Sentinels that agree; the master killed, a replica promoted, clients told the new
master, the old master back as a replica, and a re-run of site.yml that follows it."""

import time

import pytest
import redis
from redis.sentinel import Sentinel

from conftest import REDIS_PORT, SENTINEL_PORT, TLS, address, assert_check_mode_clean, cli, converge, info, secret, wait_for

MASTER_NAME = "pgfleet"


def master_and_replicas(servers):
    roles = {host: info(host)["role"] for host in servers}
    masters = [h for h, role in roles.items() if role == "master"]
    assert len(masters) == 1, roles
    return masters[0], [h for h in servers if h is not masters[0]]


def sentinel_client(servers, ca_file):
    """Sentinels and servers both verified against the fleet CA."""
    return Sentinel([(address(h), SENTINEL_PORT) for h in servers], socket_timeout=2, ssl=True, ssl_ca_certs=ca_file,
                    sentinel_kwargs={"password": secret("redis_sentinel_password"), "socket_timeout": 2,
                                     "ssl": True, "ssl_ca_certs": ca_file})


def app_master(servers, ca_file):
    return sentinel_client(servers, ca_file).master_for(MASTER_NAME, username="app", password=secret("redis_app_password"),
                                                        socket_timeout=2)


def test_check_mode_on_converged_set_reports_no_changes():
    assert_check_mode_clean()


def test_one_master_and_two_streaming_replicas(servers):
    master, replicas = master_and_replicas(servers)
    assert info(master)["connected_slaves"] == "2"
    for replica in replicas:
        state = info(replica)
        assert state["master_host"] == address(master) and state["master_link_status"] == "up", state
    assert cli(master, "app", "SET", "seed", "42") == "OK"
    assert cli(master, "admin", "WAIT", "2", "5000") == "2"
    assert all(cli(r, "app", "GET", "seed") == "42" for r in replicas)


def test_replicas_refuse_writes(servers):
    replicas = master_and_replicas(servers)[1]
    for replica in replicas:
        assert cli(replica, "app", "SET", "seed", "43").startswith("READONLY")


def test_replication_and_sentinel_users_are_least_privileged(servers):
    master = master_and_replicas(servers)[0]
    for user, command in (("replicator", ["GET", "seed"]), ("replicator", ["FLUSHALL"]),
                          ("sentinel", ["GET", "seed"]), ("sentinel", ["FLUSHALL"])):
        assert "no permissions" in cli(master, "admin", "ACL", "DRYRUN", user, *command), (user, command)
    assert cli(master, "admin", "ACL", "DRYRUN", "replicator", "PSYNC", "?", "-1") == "OK"
    assert cli(master, "admin", "ACL", "DRYRUN", "sentinel", "SLAVEOF", "NO", "ONE") == "OK"


def test_sentinels_need_a_password(servers):
    result = servers[0].run(f"redis-cli {TLS} -h 127.0.0.1 -p {SENTINEL_PORT} SENTINEL masters")
    assert "NOAUTH" in result.stdout + result.stderr


def test_only_tls_is_served(servers):
    """The plain ports are shut; TLS answers with a certificate from the fleet CA."""
    for host in servers:
        listening = host.check_output("ss -Htln")
        assert ":6379 " not in listening and f":{REDIS_PORT} " in listening and f":{SENTINEL_PORT} " in listening
        plain = host.run(f"redis-cli -h {address(host)} -p {REDIS_PORT} PING")
        assert "PONG" not in plain.stdout, "a plain client got an answer on the TLS port"
        issuer = host.check_output(f"openssl s_client -connect {address(host)}:{SENTINEL_PORT} </dev/null 2>/dev/null "
                                   "| openssl x509 -noout -issuer")
        assert "pgfleet PostgreSQL CA" in issuer, issuer


def test_three_sentinels_agree_on_the_master(servers):
    master = master_and_replicas(servers)[0]
    for host in servers:
        assert cli(host, "", "SENTINEL", "get-master-addr-by-name", MASTER_NAME, port=SENTINEL_PORT).split() == \
            [address(master), str(REDIS_PORT)]
        state = cli(host, "", "SENTINEL", "master", MASTER_NAME, port=SENTINEL_PORT).splitlines()
        state = dict(zip(state[::2], state[1::2]))
        assert (state["num-slaves"], state["num-other-sentinels"], state["quorum"]) == ("2", "2", "2"), state
        assert state["down-after-milliseconds"] == "3000"
        assert cli(host, "", "SENTINEL", "ckquorum", MASTER_NAME, port=SENTINEL_PORT).startswith("OK 3 usable")


@pytest.fixture(scope="module")
def failover(servers, ca_file):
    """Kill the master's redis-server (systemd told not to restart it) and wait for the
    Sentinels' +switch-master announcement; yield what happened, then bring it back."""
    old_master, replicas = master_and_replicas(servers)
    client = app_master(servers, ca_file)
    client.mset({f"before:{i}": i for i in range(1000)})
    assert client.wait(2, 5000) == 2  # both replicas have every key before the kill
    watcher = redis.Redis(host=address(replicas[0]), port=SENTINEL_PORT, password=secret("redis_sentinel_password"),
                          socket_timeout=90, ssl=True, ssl_ca_certs=ca_file)
    channel = watcher.pubsub()
    channel.subscribe("+switch-master")
    assert channel.get_message(timeout=5)["type"] == "subscribe"
    old_master.run_expect([0], "mkdir -p /run/systemd/system/redis-server.service.d && "
                               "printf '[Service]\\nRestart=no\\n' > /run/systemd/system/redis-server.service.d/test.conf && "
                               "systemctl daemon-reload && systemctl kill --signal=SIGKILL redis-server")
    killed = time.monotonic()
    message = channel.get_message(timeout=60)
    while message and message["type"] != "message":
        message = channel.get_message(timeout=60)
    told = time.monotonic() - killed
    assert message, "no +switch-master within 60 s of the kill"
    print(f"\nfailover: +switch-master {told:.1f} s after the kill (down-after-milliseconds 3000)")
    yield {"old_master": old_master, "replicas": replicas, "switch": message["data"].decode().split(), "seconds": told}
    old_master.run("rm -f /run/systemd/system/redis-server.service.d/test.conf && systemctl daemon-reload")


def test_killed_master_replaced_by_a_replica(failover):
    name, old_ip, new_ip, new_port = [failover["switch"][i] for i in (0, 1, 3, 4)]
    assert name == MASTER_NAME and old_ip == address(failover["old_master"])
    (promoted,) = [h for h in failover["replicas"] if address(h) == new_ip]
    assert new_port == str(REDIS_PORT) and info(promoted)["role"] == "master"
    assert failover["seconds"] < 30


def test_clients_asking_sentinel_reach_the_new_master(servers, failover, ca_file):
    new_ip = failover["switch"][3]
    assert sentinel_client(servers, ca_file).discover_master(MASTER_NAME) == (new_ip, REDIS_PORT)
    client = app_master(servers, ca_file)
    assert client.set("after", "yes")
    assert client.mget([f"before:{i}" for i in (0, 500, 999)]) == [b"0", b"500", b"999"]
    other = [h for h in failover["replicas"] if address(h) != new_ip]
    for replica in other:  # the remaining replica follows the new master
        assert wait_for(lambda r=replica: info(r).get("master_host") == new_ip and info(r)["master_link_status"] == "up")


def test_old_master_rejoins_as_a_replica(failover):
    old, new_ip = failover["old_master"], failover["switch"][3]
    old.run_expect([0], "rm -f /run/systemd/system/redis-server.service.d/test.conf && systemctl daemon-reload "
                        "&& systemctl start redis-server")
    assert wait_for(lambda: info(old).get("master_host") == new_ip and info(old).get("master_link_status") == "up",
                    timeout=60), info(old)
    assert cli(old, "app", "GET", "after") == "yes"


def test_rerun_of_site_yml_follows_the_new_master(servers, failover):
    new_ip = failover["switch"][3]
    converge()
    master, replicas = master_and_replicas(servers)
    assert address(master) == new_ip and failover["old_master"] in replicas
    for replica in replicas:
        assert f"replicaof {new_ip} {REDIS_PORT}" in replica.file("/etc/redis/redis.conf").content_string
    assert "replicaof" not in master.file("/etc/redis/redis.conf").content_string
