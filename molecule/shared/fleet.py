"""Helpers every Molecule scenario's tests share: reach the converged fleet through
Molecule's own inventory, re-run the scenario's converge, read the lab's secrets."""

import json
import os
import subprocess
import time

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE")
SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", "")
SECRETS = os.path.join(os.environ.get("PGFLEET_LAB_DIR", ".lab"), "secrets")


def podman_hosts(group):
    """testinfra host specs of GROUP's containers (for a test module's testinfra_hosts)."""
    return [f"podman://{name}" for name in AnsibleRunner(INVENTORY).get_hosts(group)]


def hosts_of(group):
    """GROUP's hosts from Molecule's inventory, reached with `podman exec` (a fraction of a
    second per command, where Ansible's podman connection takes about two)."""
    names = AnsibleRunner(INVENTORY).get_hosts(group)
    assert names, f"the inventory has no host in group {group}"
    return [testinfra.get_host(f"podman://{name}") for name in names]


def pg_cluster(host):
    """The host's PostgreSQL cluster as Debian lays it out: version (what the host's release
    ships: 15 on Debian 12, 17 on Debian 13), data and configuration directories, unit."""
    version, name = host.check_output("find /etc/postgresql -mindepth 2 -maxdepth 2 -type d | sort | head -n 1").split("/")[-2:]
    return {"version": version, "data_dir": f"/var/lib/postgresql/{version}/{name}",
            "config_dir": f"/etc/postgresql/{version}/{name}", "bin_dir": f"/usr/lib/postgresql/{version}/bin",
            "service": f"postgresql@{version}-{name}"}


def secret(name):
    with open(os.path.join(SECRETS, name), encoding="utf-8") as f:
        return f.read().split()[0]  # the password lookup may append " salt=..."


def wait_for(predicate, timeout=30.0, step=0.5):
    """Poll PREDICATE until it returns a truthy value or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "playbooks")


def inventory_with(moves, directory):
    """A copy of Molecule's inventory in DIRECTORY, with the same group_vars, and the hosts in
    MOVES ({host: (from_group, to_group)}) moved; returns its path. Never beside Molecule's own
    file: Molecule reads its whole inventory directory, so a copy there would join every run."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(INVENTORY, encoding="utf-8") as f:
        inventory = yaml.safe_load(f)
    for host, (source, target) in moves.items():
        host_vars = inventory[source]["hosts"].pop(host)
        inventory.setdefault(target, {}).setdefault("hosts", {})[host] = host_vars
    os.makedirs(directory, exist_ok=True)
    os.symlink(os.path.realpath(os.path.join(os.path.dirname(INVENTORY), "group_vars")),
               os.path.join(directory, "group_vars"))
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(inventory, f)
    return path


def converge(*args, expect_success=True):
    """Run the scenario's converge playbook (site.yml); return its JSON report (with the
    exit code as 'rc' when a failure is expected)."""
    return run_playbook(os.path.join(SCENARIO, "converge.yml"), *args, expect_success=expect_success)


def run_playbook(path, *args, expect_success=True, inventory=None):
    """Run PATH (or a name under playbooks/) against the scenario's fleet (or INVENTORY);
    return its JSON report with 'rc' and 'progress' (what it printed on standard error: the
    progress lines of long steps)."""
    if not os.path.isabs(path):
        path = os.path.join(PLAYBOOKS, path)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", inventory or INVENTORY, path, *args],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    if expect_success:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return dict(json.loads(proc.stdout), rc=proc.returncode, progress=proc.stderr)


def changed_tasks(report):
    return [f"{host}: {task['task']['name']}"
            for play in report["plays"] for task in play["tasks"]
            for host, result in task["hosts"].items() if result.get("changed")]


def assert_check_mode_clean():
    """`ansible-playbook --check --diff` on the converged fleet predicts no change and fails nowhere;
    return its report."""
    report = converge("--check", "--diff")
    stats = report["stats"]
    assert stats, "the check run reached no host"
    changed = changed_tasks(report)
    assert changed == [], "check mode predicts changes on a converged fleet: " + "; ".join(changed)
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
    return report


def adhoc(pattern, module, args, become_user="root"):
    """Run one module on PATTERN as root (or BECOME_USER), the way an operator would; return {host: result}."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible", "-i", INVENTORY, pattern, "-b", "--become-user", become_user,
                           "-m", module, "-a", json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)
    return report["plays"][0]["tasks"][0]["hosts"]


FETCH = """
import base64, ssl, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    request.add_header("Authorization", "Basic " + base64.b64encode(sys.argv[2].encode()).decode())
context = ssl.create_default_context(cafile=sys.argv[3])
if len(sys.argv) > 5:
    context.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        print(answer.status)
        print(answer.read().decode())
except urllib.error.HTTPError as refused:
    print(refused.code)
except OSError as failed:
    print(0)
    print(failed)
"""


def https_get(host, url, ca, credentials="", client_cert=()):
    """GET URL from inside HOST (python3 is in every lab image, curl is not), verifying the
    server against CA, sending CREDENTIALS ('user:password') as basic auth and, if given,
    CLIENT_CERT (certificate and key files on HOST).
    Returns (status, body); status 0 when no HTTP answer came (refused, TLS failure)."""
    out = host.run("python3 -c %s %s %s %s" + " %s" * len(client_cert), FETCH, url, credentials, ca, *client_cert).stdout
    status, _newline, body = out.partition("\n")
    return int(status or 0), body
