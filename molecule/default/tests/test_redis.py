"""What a user of the converged lab fleet expects of Redis: private, ACL-guarded, TLS,
persistent without losing data on a switch, evicting at maxmemory, monitored."""

import pytest

from conftest import converge, hosts_of, secret, wait_for

from fleet import https_get


@pytest.fixture(scope="module")
def redis_host():
    (host,) = hosts_of("redis")
    return host


def cli(host, user, *args, tls=False):
    """redis-cli as USER (its password in the environment, not on the command line)."""
    port = "6380 --tls --cacert /etc/ssl/redis/root.crt" if tls else "6379"
    password = secret("redis_app_password" if user == "app" else "redis_admin_password")
    return host.run(f"REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p {port} --user %s " + " ".join(["%s"] * len(args)),
                    password, user, *args)


def info(host, field, section="persistence"):
    out = cli(host, "admin", "INFO", section).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)[field].strip()


def test_listens_on_private_addresses_only(redis_host):
    (private,) = [a for a in redis_host.interface("eth0").addresses if ":" not in a]
    assert redis_host.service("redis-server").is_running and redis_host.service("redis-server").is_enabled
    for address in ("127.0.0.1", private):
        assert redis_host.socket(f"tcp://{address}:6379").is_listening
        assert redis_host.socket(f"tcp://{address}:6380").is_listening
    assert not redis_host.socket("tcp://0.0.0.0:6379").is_listening


def test_default_user_is_off(redis_host):
    result = redis_host.run("redis-cli -h 127.0.0.1 PING")
    assert "NOAUTH" in result.stdout + result.stderr


def test_app_user_reads_and_writes_but_no_admin_commands(redis_host):
    assert cli(redis_host, "app", "SET", "greeting", "hello").stdout.strip() == "OK"
    assert cli(redis_host, "app", "GET", "greeting").stdout.strip() == "hello"
    for command in (["FLUSHALL"], ["CONFIG", "GET", "maxmemory"], ["ACL", "LIST"], ["FUNCTION", "FLUSH"],
                    ["SCRIPT", "FLUSH"], ["FUNCTION", "RESTORE", "x"]):
        out = cli(redis_host, "app", *command).stdout
        assert "NOPERM" in out, (command, out)
    # DEBUG is also switched off server-wide (enable-debug-command); ask the ACL itself.
    for command in (["DEBUG", "SLEEP", "0"], ["FLUSHALL"], ["CONFIG", "SET", "maxmemory", "0"]):
        out = cli(redis_host, "admin", "ACL", "DRYRUN", "app", *command).stdout
        assert "no permissions" in out, (command, out)
    assert cli(redis_host, "app", "GET", "greeting").stdout.strip() == "hello"


def test_no_password_in_the_journal(redis_host):
    # sudo logs each become command line; the role's redis-cli calls read their password
    # from stdin, so neither the command line nor the environment carries it.
    journal = redis_host.check_output("journalctl --no-pager -o cat")
    assert "COMMAND=" in journal, "sudo logged no command: the check below would prove nothing"
    for name in ("redis_admin_password", "redis_app_password", "redis_exporter_password"):
        assert secret(name) not in journal, f"{name} is in the journal"


def test_tls_port_serves_a_certificate_from_the_fleet_ca(redis_host):
    assert cli(redis_host, "app", "PING", tls=True).stdout.strip() == "PONG"
    # The same CA as PgBouncer's and PostgreSQL's, not one of its own (nor its key on the host).
    bouncer = hosts_of("pgbouncer")[0]
    assert redis_host.file("/etc/ssl/redis/root.crt").content == bouncer.file("/etc/pgbouncer/root.crt").content
    assert redis_host.run("ls /etc/ssl/redis").stdout.split() == ["redis.crt", "redis.key", "root.crt"]
    # A client that trusts another CA is refused the handshake.
    stranger = redis_host.run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                              "-subj /CN=stranger -keyout /tmp/stranger.key -out /tmp/stranger.crt")
    assert stranger.rc == 0, stranger.stderr
    refused = redis_host.run("redis-cli -h 127.0.0.1 -p 6380 --tls --cacert /tmp/stranger.crt PING")
    assert refused.rc != 0 or "PONG" not in refused.stdout, refused.stdout


def test_secrets_are_not_world_readable(redis_host):
    for path in ("/etc/redis/users.acl", "/etc/redis/redis.conf", "/etc/default/prometheus-redis-exporter"):
        assert not redis_host.file(path).mode & 0o004, path
    acl = redis_host.file("/etc/redis/users.acl").content_string
    assert secret("redis_app_password") not in acl and "#" in acl  # hashes only


def test_aof_switch_through_the_role_keeps_data_and_restarts_nothing(redis_host):
    cli(redis_host, "admin", "EVAL", "for i=1,10000 do redis.call('SET','persist:'..i,i) end", "0")
    run_id = info(redis_host, "run_id", "server")
    assert info(redis_host, "aof_enabled") == "1"
    # The redis play alone, as an operator changing a Redis setting runs it (CI time).
    converge("--limit", "redis", "--tags", "redis", "-e", "redis_appendonly=false")
    assert info(redis_host, "aof_enabled") == "0" and info(redis_host, "run_id", "server") == run_id
    converge("--limit", "redis", "--tags", "redis")
    assert info(redis_host, "aof_enabled") == "1" and info(redis_host, "run_id", "server") == run_id
    assert "appendonly yes" in redis_host.file("/etc/redis/redis.conf").content_string
    redis_host.run_expect([0], "systemctl restart redis-server")
    assert wait_for(lambda: cli(redis_host, "admin", "DBSIZE").stdout.strip().isdigit())
    assert info(redis_host, "run_id", "server") != run_id
    assert cli(redis_host, "admin", "EXISTS", "persist:1", "persist:10000").stdout.strip() == "2"


def test_exporter_answers_with_redis_up(redis_host):
    """Over TLS, to a client with a fleet-CA certificate only (here the host's own)."""
    (private,) = [a for a in redis_host.interface("eth0").addresses if ":" not in a]
    assert redis_host.socket(f"tcp://{private}:9121").is_listening
    assert not redis_host.socket("tcp://0.0.0.0:9121").is_listening
    tls = "/etc/prometheus/tls/"
    url = f"https://{redis_host.backend.get_hostname()}:9121/metrics"

    def metrics():
        status, body = https_get(redis_host, url, tls + "root.crt", "", (tls + "exporter.crt", tls + "exporter.key"))
        return body if status == 200 else ""

    assert "\nredis_up 1" in wait_for(metrics)
    assert https_get(redis_host, url, tls + "root.crt")[0] == 0  # no client certificate, no answer
    assert secret("redis_exporter_password") not in redis_host.check_output("ps -eo args")
    show = redis_host.check_output("systemctl show -p User -p NoNewPrivileges -p ProtectSystem prometheus-redis-exporter")
    assert set(show.split()) >= {"User=prometheus", "NoNewPrivileges=yes", "ProtectSystem=strict"}, show


def test_eviction_at_maxmemory(redis_host):
    assert cli(redis_host, "admin", "CONFIG", "GET", "maxmemory-policy").stdout.split() == ["maxmemory-policy", "allkeys-lru"]
    before = int(info(redis_host, "evicted_keys", "stats"))
    # 120 MB of values into a 64 MB cache, as the application user.
    result = redis_host.run("redis-benchmark -h 127.0.0.1 --user app -a %s -t set -n 12000 -d 10000 -r 100000000 -q",
                            secret("redis_app_password"))
    assert result.rc == 0, result.stderr
    assert int(info(redis_host, "evicted_keys", "stats")) > before
    assert int(info(redis_host, "used_memory", "memory")) <= 64 * 1024 * 1024 * 1.1
