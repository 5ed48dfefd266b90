"""Fixtures for the Sentinel scenario; the helpers live in molecule/shared/fleet.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
from fleet import assert_check_mode_clean, converge, hosts_of, secret, wait_for  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

# The admin password is Vault-encrypted in group_vars/all/secrets.yml (test-only vault-password).
ADMIN_PASSWORD = "vaulted-redis-admin-password-7Qm2xK"
SENTINEL_PORT = 26379
REDIS_PORT = 6380  # TLS; the plain port is shut
TLS = "--tls --cacert /etc/ssl/redis/root.crt"


def address(host):
    (ipv4,) = [a for a in host.interface("eth0").addresses if ":" not in a]
    return ipv4


def cli(host, user, *args, port=REDIS_PORT):
    """redis-cli on HOST as USER ('sentinel-client' for a Sentinel); passwords go through the environment."""
    if port == SENTINEL_PORT:
        password, login = secret("redis_sentinel_password"), ""
    else:
        password = secret("redis_app_password") if user == "app" else ADMIN_PASSWORD
        login = f"--user {user}"
    result = host.run(f"REDISCLI_AUTH=%s redis-cli {TLS} --no-auth-warning -h 127.0.0.1 -p {port} {login} --raw "
                      + " ".join(["%s"] * len(args)), password, *args)
    return result.stdout.strip()


def info(host, section="replication"):
    out = cli(host, "admin", "INFO", section)
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture(scope="session")
def servers():
    return hosts_of("redis")


@pytest.fixture(scope="session")
def ca_file(servers, tmp_path_factory):
    """The fleet CA's certificate, for clients on the controller."""
    path = tmp_path_factory.mktemp("tls") / "root.crt"
    path.write_bytes(servers[0].file("/etc/ssl/redis/root.crt").content)
    return str(path)
