#!/usr/bin/python3
"""Read-only checks of one host for security_audit.yml, run as root: the OS (secret files
others can read, secrets on a command line, a host firewall) and, where installed,
PgBouncer and Redis as their files configure them. Prints a JSON list of rows [id, severity, check, finding];
an empty finding means the check passed."""

import glob
import json
import os
import re
import stat
import subprocess

# Files that hold passwords, keys or password hashes, wherever pgfleet's roles put them.
SECRET_GLOBS = ["/etc/postgresql/*/*/*.key", "/var/lib/postgresql/.pgpass*",
                "/etc/patroni/*.yml", "/etc/pgbackrest.conf", "/etc/pgbackrest/*.conf", "/etc/pgbouncer/*.key",
                "/etc/pgbouncer/userlist.txt", "/etc/redis/*.conf",
                "/etc/redis/users.acl", "/etc/ssl/redis/*.key", "/etc/etcd/pki/*.key", "/etc/prometheus/tls/*.key",
                "/etc/prometheus/pgfleet-web.yml", "/etc/prometheus/prometheus.yml",
                "/etc/prometheus/alertmanager.yml", "/etc/prometheus/*.pass",
                "/etc/default/prometheus-redis-exporter",
                "/etc/pgfleet/*", "/root/.pgpass"]
# A password given as an argument: key=value and --flag value forms, and redis-cli -a.
SECRET_ARGUMENT = re.compile(r"(pass(word|wd)?=\S|--pass(word)?[= ]\S|requirepass \S|redis-cli\b.*\s-a\s)", re.I)


def world_readable_secrets():
    found = []
    for pattern in SECRET_GLOBS:
        for path in glob.glob(pattern):
            mode = os.stat(path).st_mode
            if stat.S_ISREG(mode) and mode & stat.S_IROTH:
                found.append(f"{path} {stat.filemode(mode)}")
    return ", ".join(sorted(set(found)))


def secret_arguments():
    found = []
    for proc in glob.glob("/proc/[0-9]*/cmdline"):
        if proc == f"/proc/{os.getpid()}/cmdline":
            continue
        try:
            with open(proc, "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended
            continue
        if SECRET_ARGUMENT.search(argv):
            found.append(f"pid {proc.split('/')[2]} ({argv.split()[0]})")  # never the secret itself
    return ", ".join(found)


def settings(path, separator):
    """key -> value of a config file (the last one wins, as the daemons read them)."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            parts = line.split(separator, 1) if separator == "=" else line.split(None, 1)
            if len(parts) == 2 and not line.startswith(("#", ";", "[")):
                values[parts[0].strip().lower()] = parts[1].strip().strip('"')
    return values


def pgbouncer_rows(ini="/etc/pgbouncer/pgbouncer.ini"):
    conf = settings(ini, "=")
    hba_rules = []
    if conf.get("auth_type") == "hba" and os.path.exists(conf.get("auth_hba_file", "")):
        with open(conf["auth_hba_file"], encoding="utf-8") as f:
            hba_rules = [line.split() for line in f if line.strip() and not line.lstrip().startswith("#")]
    network = [r for r in hba_rules if r[0] in ("host", "hostssl", "hostnossl")]
    console = [r for r in network if r[1] in ("pgbouncer", "all")]
    weak = [" ".join(r) for r in hba_rules if r[-1] in ("trust", "password", "md5", "plain", "any")]
    listen = conf.get("listen_addr", "")
    return [
        ["pgbouncer_client_tls", "critical", "PgBouncer clients must use TLS (client_tls_sslmode require or verify-*)",
         "" if conf.get("client_tls_sslmode") in ("require", "verify-ca", "verify-full")
         else f"client_tls_sslmode = {conf.get('client_tls_sslmode', 'disable')}"],
        ["pgbouncer_server_tls", "critical", "PgBouncer verifies the server (server_tls_sslmode verify-ca or verify-full)",
         "" if conf.get("server_tls_sslmode") in ("verify-ca", "verify-full")
         else f"server_tls_sslmode = {conf.get('server_tls_sslmode', 'prefer')}"],
        ["pgbouncer_auth", "critical", "PgBouncer authenticates by hba with TLS-only network rules and no weak method",
         ("auth_type = " + conf.get("auth_type", "md5")) if conf.get("auth_type") != "hba"
         else ", ".join([" ".join(r) for r in network if r[0] != "hostssl" and r[-1] != "reject"] + weak)],
        ["pgbouncer_console", "critical", "the admin console refuses every network login",
         "" if console and console[0][1] == "pgbouncer" and console[0][-1] == "reject"
         else "first network rule for the console: " + (" ".join(console[0]) if console else "none")],
        ["pgbouncer_listen", "critical", "PgBouncer listens on no wildcard address",
         listen if re.search(r"(^|,)\s*(\*|0\.0\.0\.0|::)\s*(,|$)", listen) else ""],
    ]


def redis_rows(conf_path="/etc/redis/redis.conf", acl_path="/etc/redis/users.acl"):
    conf = settings(conf_path, " ")
    default_user = ""
    if os.path.exists(acl_path):
        with open(acl_path, encoding="utf-8") as f:
            default_user = next((line.strip() for line in f if line.startswith("user default ")), "")
    default_open = (not default_user and "requirepass" not in conf) or "nopass" in default_user.split()
    binds = conf.get("bind", "").split()
    return [
        ["redis_default_user", "critical", "Redis's default user is off or has a password",
         "user default nopass" if default_open else ""],
        ["redis_protected_mode", "critical", "Redis's protected mode is on",
         "" if conf.get("protected-mode", "yes") == "yes" else "protected-mode " + conf["protected-mode"]],
        ["redis_bind", "critical", "Redis binds to given addresses, not a wildcard",
         " ".join(binds) if not binds or {"*", "0.0.0.0", "::", "-::*", "*-::*"} & set(binds) else ""],
        ["redis_tls", "warning", "Redis serves TLS",
         "" if int(conf.get("tls-port", "0")) > 0 else "no tls-port"],
    ]


def firewall():
    """'' when an nftables chain on the input hook drops what no rule accepts (the firewall
    role's, or the host's own), else what is missing. A warning, not critical: a fleet may
    be closed by its cloud's security groups instead."""
    try:
        listed = subprocess.run(["nft", "-j", "list", "chains"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "nftables is not installed"
    if listed.returncode != 0:
        return "nft: " + listed.stderr.strip()
    chains = [item["chain"] for item in json.loads(listed.stdout)["nftables"] if "chain" in item]
    if any(chain.get("hook") == "input" and chain.get("policy") == "drop" for chain in chains):
        return ""
    return "no input chain with a drop policy"


def main():
    rows = [["secret_files", "critical", "no file holding a secret is readable by others", world_readable_secrets()],
            ["secret_arguments", "critical", "no process has a password on its command line", secret_arguments()],
            ["firewall", "warning", "a host firewall drops what is not served", firewall()]]
    if os.path.exists("/etc/pgbouncer/pgbouncer.ini"):
        rows += pgbouncer_rows()
    if os.path.exists("/etc/redis/redis.conf"):
        rows += redis_rows()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
