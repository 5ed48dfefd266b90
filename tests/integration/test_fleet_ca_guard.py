"""fleet_tls on a controller that lacks the fleet CA (a new laptop, a fresh AWX job
container): it makes the CA for a new fleet, but stops, naming the host and what to do,
before a second CA would re-issue the certificates of a fleet that has them; or it takes
the CA from AWS Secrets Manager (moto's server on loopback) and keeps nothing of it on the
controller. The role runs
for real on this machine (connection local) into temporary directories."""

import json
import os
import subprocess
import sys
import textwrap

import boto3
import pytest

from services import start_moto, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]  # the host names the certificate carries
  vars:
    ansible_python_interpreter: {python}
    fleet_tls_package_checked: true  # python3-cryptography: the test's own Python has it
  tasks:
    - name: A certificate from the fleet CA
      ansible.builtin.include_role:
        name: pgfleet.core.fleet_tls
      vars:
        fleet_tls_ca_dir: "{{{{ ca_dir }}}}"
        fleet_tls_dir: "{{{{ host_dir }}}}"
        fleet_tls_addresses: []
"""


@pytest.fixture(name="play")
def fixture_play(tmp_path):
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(PLAYBOOK.format(python=sys.executable)))
    host_dir = tmp_path / "host"
    host_dir.mkdir()

    def run(ca_dir, *args, env=None):
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1", **(env or {}))
        proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(path), "-e", f"ca_dir={ca_dir}", "-e", f"host_dir={host_dir}",
                               *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr

    return run, host_dir


def changed(report):
    return [task["task"]["name"] for play in report["plays"] for task in play["tasks"]
            for result in task["hosts"].values() if result.get("changed")]


def test_a_new_fleet_gets_its_ca_and_a_second_run_changes_nothing(play, tmp_path):
    run, host_dir = play
    rc, report, output = run(tmp_path / "pki")
    assert rc == 0, output
    assert (tmp_path / "pki" / "ca.key").exists() and (host_dir / "server.crt").exists()
    assert (host_dir / "root.crt").read_text() == (tmp_path / "pki" / "ca.crt").read_text()
    rc, report, output = run(tmp_path / "pki")
    assert rc == 0 and changed(report) == [], output


def test_a_converged_host_is_read_once_and_anything_that_differs_is_issued_again(play, tmp_path):
    """A converged host skips the key, request, signature and copies (one read instead); a
    changed mode, a foreign root.crt or a replaced key each bring the work back."""
    run, host_dir = play
    assert run(tmp_path / "pki")[0] == 0
    rc, report, output = run(tmp_path / "pki")
    assert rc == 0 and changed(report) == [], output
    ran = [t["task"]["name"] for p in report["plays"] for t in p["tasks"] if any(not h.get("skipped") for h in t["hosts"].values())]
    assert not [n for n in ran if n.endswith(("Create the host key", "Sign the host certificate on the controller"))], ran

    (host_dir / "server.crt").chmod(0o600)
    (host_dir / "root.crt").write_text("not the fleet's CA\n")
    rc, report, output = run(tmp_path / "pki")
    assert rc == 0 and changed(report) == ["pgfleet.core.fleet_tls : Install the host certificate and the CA certificate"], output
    assert oct((host_dir / "server.crt").stat().st_mode & 0o777) == "0o644"
    assert (host_dir / "root.crt").read_text() == (tmp_path / "pki" / "ca.crt").read_text()

    old_cert = (host_dir / "server.crt").read_bytes()
    (host_dir / "server.key").unlink()
    rc, report, output = run(tmp_path / "pki")
    assert rc == 0, output
    key = subprocess.run(["openssl", "pkey", "-in", str(host_dir / "server.key"), "-pubout"], capture_output=True, text=True, check=True)
    cert = subprocess.run(["openssl", "x509", "-in", str(host_dir / "server.crt"), "-noout", "-pubkey"], capture_output=True, text=True, check=True)
    assert key.stdout == cert.stdout and (host_dir / "server.crt").read_bytes() != old_cert
    assert run(tmp_path / "pki")[1]["stats"]["localhost"]["changed"] == 0

def test_a_controller_without_the_ca_stops_before_replacing_the_fleets_certificates(play, tmp_path):
    run, host_dir = play
    assert run(tmp_path / "pki")[0] == 0
    before = {name: (host_dir / name).read_bytes() for name in ("server.key", "server.crt", "root.crt")}

    for mode in ([], ["--check"]):
        rc, report, output = run(tmp_path / "new-controller-pki", *mode)
        assert rc != 0, output
        assert "The fleet CA is not on this controller" in output and str(host_dir / "root.crt") in output, output
        assert "fleet_tls_replace_ca=true" in output
        assert not (tmp_path / "new-controller-pki").exists()  # no second CA made
        assert {name: (host_dir / name).read_bytes() for name in before} == before

    # On purpose: a new CA, and the host's certificate re-issued by it.
    rc, report, output = run(tmp_path / "new-controller-pki", "-e", "fleet_tls_replace_ca=true")
    assert rc == 0, output
    assert (host_dir / "root.crt").read_text() == (tmp_path / "new-controller-pki" / "ca.crt").read_text()
    assert (host_dir / "server.crt").read_bytes() != before["server.crt"]
    assert (host_dir / "server.key").read_bytes() == before["server.key"]  # the host's key stays


@pytest.fixture(name="stored_ca")
def fixture_stored_ca(tmp_path):
    """A CA made with openssl, its key and certificate stored in moto's Secrets Manager."""
    ca = tmp_path / "stored"
    ca.mkdir()
    subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(ca / "ca.key")], check=True)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(ca / "ca.key"), "-subj", "/CN=pgfleet stored CA",
                    "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-out", str(ca / "ca.crt")], check=True, capture_output=True)
    proc, port = start_moto()
    env = {"AWS_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    client = boto3.client("secretsmanager", endpoint_url=env["AWS_URL"], region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for name in ("ca.key", "ca.crt"):
        client.create_secret(Name=f"pgfleet/test/{name}", SecretString=(ca / name).read_text())
    yield ca, env
    stop_process(proc)


def lookup(name):
    return "{{ lookup('amazon.aws.secretsmanager_secret', 'pgfleet/test/%s', region='eu-west-1') }}" % name


def test_a_ca_from_secrets_manager_signs_and_leaves_nothing_on_the_controller(play, tmp_path, stored_ca):
    run, host_dir = play
    ca, aws = stored_ca
    controller = tmp_path / "controller-pki"
    stored = json.dumps({"fleet_tls_ca_key_content": lookup("ca.key"), "fleet_tls_ca_cert_content": lookup("ca.crt")})
    for attempt in ("first", "second"):
        rc, report, output = run(controller, "-e", stored, env=aws)
        assert rc == 0, output
        assert (changed(report) != []) == (attempt == "first"), (attempt, changed(report))
        assert (ca / "ca.key").read_text().strip().splitlines()[1] not in output  # the key is never printed
    assert not controller.exists()  # no CA directory, no key on the controller
    assert (host_dir / "root.crt").read_text().strip() == (ca / "ca.crt").read_text().strip()
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca / "ca.crt"), str(host_dir / "server.crt")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_stored_key_without_its_certificate_is_refused(play, tmp_path, stored_ca):
    run, host_dir = play
    _, aws = stored_ca
    rc, _report, output = run(tmp_path / "pki", "-e", json.dumps({"fleet_tls_ca_key_content": lookup("ca.key")}), env=aws)
    assert rc != 0 and "fleet_tls_ca_key_content and fleet_tls_ca_cert_content go together" in output, output
    assert not (tmp_path / "pki").exists() and not any(host_dir.iterdir())


BATCH = """
- hosts: all
  connection: local
  gather_facts: true
  gather_subset: [min]
  vars:
    ansible_python_interpreter: {python}
    fleet_tls_package_checked: true
  tasks:
    - name: A certificate from the fleet CA
      ansible.builtin.include_role:
        name: pgfleet.core.fleet_tls
      vars:
        fleet_tls_ca_dir: "{{{{ ca_dir }}}}"
        fleet_tls_dir: "{{{{ host_dir }}}}/{{{{ inventory_hostname }}}}"
        fleet_tls_addresses: []
"""


def test_a_batch_whose_first_host_checked_the_ca_already_gives_the_others_theirs(tmp_path):
    """site.yml runs fleet_tls in several plays: the first host of a later play may have checked
    the CA in an earlier one while the others have not (the lab's backup host in the exporters
    play). The CA's run_once look must still reach them all."""
    ca_dir, host_dir = tmp_path / "pki", tmp_path / "hosts"
    for name in ("first", "second"):
        (host_dir / name).mkdir(parents=True)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"first": {"fleet_tls_cas_checked": [str(ca_dir)]}, "second": {}}}}))
    book = tmp_path / "batch.yml"
    book.write_text(textwrap.dedent(BATCH.format(python=sys.executable)))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(book), "-e", f"ca_dir={ca_dir}", "-e", f"host_dir={host_dir}"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for name in ("first", "second"):
        assert (host_dir / name / "server.crt").exists() and (host_dir / name / "root.crt").exists(), name
    assert (ca_dir / "ca.key").exists()
