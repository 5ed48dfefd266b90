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
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ee import ROOT, create_context, environment, run  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(name="context", scope="module")
def fixture_context(tmp_path_factory):
    return create_context(tmp_path_factory.mktemp("ee") / "context")


@pytest.fixture(name="ee", scope="module")
def fixture_ee(context):
    """A virtualenv and a collection tree with the context's requirements only (tests/ee.py)."""
    return environment(context)


def test_the_context_carries_the_collections_python_and_system_requirements(context):
    with open(context / "_build" / "requirements.yml", encoding="utf-8") as f:
        galaxy = yaml.safe_load(f)
    with open(os.path.join(ROOT, "collections", "requirements.yml"), encoding="utf-8") as f:
        assert galaxy == yaml.safe_load(f)
    python = (context / "_build" / "requirements.txt").read_text().split()
    assert {re.split(r"[<>=]", line)[0] for line in python} == {"cryptography", "passlib", "bcrypt", "kubernetes", "boto3"}
    containerfile = (context / "Containerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.19.14 ansible-runner==2.4.3"' in containerfile
    assert "openssh-clients" in (context / "_build" / "bindep.txt").read_text()


def test_every_playbook_parses_with_the_ee_requirements_only(ee):
    listed = run([os.path.join(ee["bin"], "ansible-galaxy"), "collection", "list", "--format", "json"], env=ee["env"]).stdout
    names = {name for path in json.loads(listed).values() for name in path}
    assert {"amazon.aws", "community.postgresql", "community.crypto", "community.general", "kubernetes.core"} <= names
    assert "containers.podman" not in names and "ansible.posix" not in names
    playbooks = ["site.yml"] + sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))
    for playbook in playbooks:
        run([os.path.join(ee["bin"], "ansible-playbook"), "-i", "inventories/lab", "--syntax-check", playbook], env=ee["env"])


def test_the_controller_side_modules_and_filters_run(ee, tmp_path):
    adhoc = [os.path.join(ee["bin"], "ansible"), "localhost", "-c", "local", "-e", f"ansible_python_interpreter={os.path.join(ee['bin'], 'python')}"]
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
