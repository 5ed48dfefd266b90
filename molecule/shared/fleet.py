"""Helpers every Molecule scenario's tests share: reach the converged fleet through
Molecule's own inventory, re-run the scenario's converge, run a playbook as AWX's job
template does, read the lab's secrets."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def run_playbook(path, *args, expect_success=True, inventory=None, env=None):
    """Run PATH (or a name under playbooks/) against the scenario's fleet (or INVENTORY);
    return its JSON report with 'rc' and 'progress' (what it printed on standard error: the
    progress lines of long steps)."""
    if not os.path.isabs(path):
        path = os.path.join(PLAYBOOKS, path)
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0", **(env or {}))
    proc = subprocess.run(["ansible-playbook", "-i", inventory or INVENTORY, path, *args],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    if expect_success:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return dict(json.loads(proc.stdout), rc=proc.returncode, progress=proc.stderr)


ROOT = os.path.join(PLAYBOOKS, "..")


def survey_answers(template, answers):
    """The extra vars AWX gives TEMPLATE's playbook for ANSWERS: the survey's defaults, then
    the answers; what AWX itself refuses (a variable outside the survey, a required answer
    missing, a choice not offered) fails here."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROOT, "awx", "job_templates.yml"), encoding="utf-8") as f:
        (spec,) = [t for t in yaml.safe_load(f)["awx_job_templates"] if t["name"] == template]
    survey = {q["variable"]: q for q in spec.get("survey", [])}
    assert set(answers) <= set(survey), f"{template}'s survey asks no {sorted(set(answers) - set(survey))}"
    for name, question in survey.items():
        assert name in answers or not question["required"], f"{template}'s survey requires {name}"
        assert name not in answers or question["type"] != "multiplechoice" or answers[name] in question["choices"], \
            f"{template}'s survey offers no {name} {answers[name]!r}"
    return spec["playbook"], {**{n: q["default"] for n, q in survey.items() if "default" in q}, **answers}


def run_job(template, answers=None, expect_success=True):
    """Run AWX job template TEMPLATE (awx/job_templates.yml) as AWX runs it: ansible-runner,
    non-interactive, with the execution environment's requirements only (tests/ee.py), the
    checkout as the project (its own ansible.cfg), the survey's ANSWERS as extra vars, against
    the scenario's fleet. Two stand-ins: the lab's secret files for AWX's credentials
    (PGFLEET_LAB_DIR), and the lab's connection into the containers for SSH, with the one
    collection it imports (community.docker), after the project's collection paths.
    Returns {'status', 'rc', 'stdout' (progress lines included), 'events'}."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import ee  # pylint: disable=import-outside-toplevel
    playbook, extravars = survey_answers(template, answers or {})
    with tempfile.TemporaryDirectory(prefix="pgfleet-ee-context-") as context:
        environment = ee.environment(ee.create_context(os.path.join(context, "context")))
    job = tempfile.mkdtemp(prefix="awx-job-", dir=os.environ.get("PGFLEET_LAB_DIR"))
    os.makedirs(os.path.join(job, "env"))
    with open(os.path.join(job, "env", "extravars"), "w", encoding="utf-8") as f:
        json.dump(extravars, f)
    os.symlink(os.path.realpath(ROOT), os.path.join(job, "project"))
    env = {key: value for key, value in environment["env"].items() if key not in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH")}
    connection = os.path.join(job, "connection")
    shutil.copytree(os.path.join(ee.BUNDLE, "community", "docker"),
                    os.path.join(connection, "ansible_collections", "community", "docker"))
    # The project's ansible.cfg paths (the EE's collections, the checkout), then the connection's.
    env["ANSIBLE_COLLECTIONS_PATH"] = ":".join([environment["env"]["ANSIBLE_COLLECTIONS_PATH"], "/usr/share/ansible/collections",
                                                os.path.join(job, "project", "collections"), connection])
    env.update({key: os.environ[key] for key in ("PGFLEET_LAB_DIR", "CONTAINERS_CONF") if key in os.environ}, LANG="C.UTF-8")
    proc = subprocess.run([os.path.join(environment["bin"], "ansible-runner"), "run", job, "-p", playbook, "--ident", "job",
                           "--inventory", os.path.dirname(INVENTORY)],
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
    artifacts = os.path.join(job, "artifacts", "job")
    with open(os.path.join(artifacts, "status"), encoding="utf-8") as f:
        status = f.read().strip()
    with open(os.path.join(artifacts, "stdout"), encoding="utf-8") as f:
        stdout = f.read()
    events = []
    for path in glob.glob(os.path.join(artifacts, "job_events", "*.json")):
        with open(path, encoding="utf-8") as f:
            events.append(json.load(f))
    events.sort(key=lambda e: e["counter"])
    if expect_success:
        assert status == "successful", f"{job}: " + stdout[-4000:] + proc.stderr[-2000:]
    if status == "successful":
        shutil.rmtree(job)  # a failed job's directory stays for its artifacts
    return {"status": status, "rc": proc.returncode, "stdout": stdout, "progress": stdout, "events": events}


def job_results(report, task):
    """The results the job's TASK (its name) returned, one per host and loop item."""
    return [e["event_data"]["res"] for e in report["events"]
            if e.get("event") in ("runner_on_ok", "runner_on_failed", "runner_item_on_ok")
            and e["event_data"].get("task") == task]


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
