"""The execution environment's definition is enough to run pgfleet: `ansible-builder create`
makes its build context, and a fresh virtualenv holding only what that context lists
(ansible-core, ansible-runner, the Python requirements, the Galaxy collections) syntax-checks
every playbook and runs the controller-side modules and filters the roles use. Galaxy is not
reachable here: the listed collections are copied from the pinned ansible bundle, the same
versions Galaxy would give within the listed ranges. No image is built (no registry)."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(os.path.dirname(os.path.dirname(yaml.__file__)), "ansible_collections")


def run(args, env=None, check=True, cwd=ROOT):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if check:
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


@pytest.fixture(name="context", scope="module")
def fixture_context(tmp_path_factory):
    path = tmp_path_factory.mktemp("ee") / "context"
    run(["ansible-builder", "create", "-f", "execution-environment.yml", "-c", str(path)])
    return path


@pytest.fixture(name="ee", scope="module")
def fixture_ee(context, tmp_path_factory):
    """A virtualenv and a collection tree with the context's requirements only."""
    base = tmp_path_factory.mktemp("ee-venv")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    with open(context / "Containerfile", encoding="utf-8") as f:
        refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]+)"', f.read()).group(1).split()
    run([str(venv / "bin" / "pip"), "install", "--quiet", *refs, "-r", str(context / "_build" / "requirements.txt")])
    collections = base / "collections" / "ansible_collections"
    with open(context / "_build" / "requirements.yml", encoding="utf-8") as f:
        wanted = [entry["name"] for entry in yaml.safe_load(f)["collections"]]
    while wanted:
        name = wanted.pop()
        namespace, collection = name.split(".")
        target = collections / namespace / collection
        if target.exists():
            continue
        shutil.copytree(os.path.join(BUNDLE, namespace, collection), target)
        with open(target / "MANIFEST.json", encoding="utf-8") as f:
            wanted += list(json.load(f)["collection_info"].get("dependencies") or {})
    (base / "ansible.cfg").write_text("[defaults]\n")
    (base / "home").mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(base / "home"), "ANSIBLE_CONFIG": str(base / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(base / "collections"), "ANSIBLE_FORCE_COLOR": "0"}
    return {"env": env, "bin": venv / "bin", "base": base}


def test_the_context_carries_the_collections_python_and_system_requirements(context):
    with open(context / "_build" / "requirements.yml", encoding="utf-8") as f:
        galaxy = yaml.safe_load(f)
    with open(os.path.join(ROOT, "collections", "requirements.yml"), encoding="utf-8") as f:
        assert galaxy == yaml.safe_load(f)
    python = (context / "_build" / "requirements.txt").read_text().split()
    assert {re.split(r"[<>=]", line)[0] for line in python} == {"cryptography", "passlib", "bcrypt", "kubernetes"}
    containerfile = (context / "Containerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in containerfile
    assert "openssh-clients" in (context / "_build" / "bindep.txt").read_text()


def test_every_playbook_parses_with_the_ee_requirements_only(ee):
    listed = run([str(ee["bin"] / "ansible-galaxy"), "collection", "list", "--format", "json"], env=ee["env"]).stdout
    names = {name for path in json.loads(listed).values() for name in path}
    assert {"community.postgresql", "community.crypto", "community.general", "kubernetes.core"} <= names
    assert "containers.podman" not in names and "ansible.posix" not in names
    playbooks = ["site.yml"] + sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))
    for playbook in playbooks:
        run([str(ee["bin"] / "ansible-playbook"), "-i", "inventories/lab", "--syntax-check", playbook], env=ee["env"])


def test_the_controller_side_modules_and_filters_run(ee, tmp_path):
    adhoc = [str(ee["bin"] / "ansible"), "localhost", "-c", "local", "-e", f"ansible_python_interpreter={ee['bin'] / 'python'}"]
    key = tmp_path / "ca.key"
    run(adhoc + ["-m", "community.crypto.openssl_privatekey", "-a", f"path={key} type=ECC curve=secp256r1"], env=ee["env"])
    assert key.exists()
    hashed = run(adhoc + ["-m", "ansible.builtin.debug", "-a", "msg={{ 'secret' | password_hash('bcrypt', rounds=4) }}"], env=ee["env"])
    assert "$2b$04$" in hashed.stdout
    # No cluster here: kubernetes.core must fail on the missing kubeconfig, not on a missing library.
    k8s = run(adhoc + ["-m", "kubernetes.core.k8s_info", "-a", "kind=Pod namespace=default"],
              env=dict(ee["env"], KUBECONFIG=str(tmp_path / "none")), check=False)
    assert k8s.returncode != 0 and "kubernetes" in k8s.stdout.lower()
    assert "Failed to import the required Python library" not in k8s.stdout, k8s.stdout[-2000:]
