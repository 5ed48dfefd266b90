"""What a plain checkout and the built artifact can run, with nothing from `make` around
them: every playbook of a fresh clone resolves pgfleet.core by itself (AWX's project sync
gets exactly this), `ansible-playbook site.yml` works at the top level, the artifact holds
no lab file and installs as pgfleet.core with `ansible-playbook pgfleet.core.site`, and the
declared dependencies are the collections the code calls."""

import glob
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(args, cwd, **env):
    proc = subprocess.run(args, cwd=cwd, env=dict(os.environ, **env), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture(name="bare_env", scope="module")
def fixture_bare_env(tmp_path_factory):
    """An empty ansible.cfg, collections path and home: what a fresh job container has."""
    base = tmp_path_factory.mktemp("bare")
    (base / "ansible.cfg").write_text("[defaults]\n")
    (base / "collections").mkdir()
    (base / "home").mkdir()
    return {"ANSIBLE_CONFIG": str(base / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(base / "collections"),
            "HOME": str(base / "home")}


@pytest.fixture(name="clone", scope="module")
def fixture_clone(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkout") / "pgfleet"
    run(["git", "clone", "--quiet", ROOT, str(path)], cwd=ROOT)
    return path


def test_every_playbook_of_a_fresh_clone_finds_the_collection(clone, bare_env):
    playbooks = sorted(glob.glob(str(clone / "playbooks" / "*.yml")))
    assert len(playbooks) >= 12
    for playbook in ["site.yml"] + playbooks:
        run(["ansible-playbook", "-i", "inventories/lab", "--syntax-check", playbook], cwd=clone, **bare_env)
    # From anywhere else too: the collection sits beside the playbooks.
    run(["ansible-playbook", "-i", "localhost,", "--syntax-check", str(clone / "playbooks" / "backup.yml")], cwd="/", **bare_env)


def test_the_checkout_config_keeps_the_default_collection_paths(clone):
    proc = run(["ansible-config", "dump", "--only-changed"], cwd="/", ANSIBLE_CONFIG=str(clone / "ansible.cfg"))
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("COLLECTIONS_PATHS")]
    assert str(clone / "collections") in line and "/usr/share/ansible/collections" in line and "/.ansible/collections" in line


def test_the_artifact_holds_no_lab_file_and_runs_as_pgfleet_core(tmp_path, bare_env):
    run(["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), ROOT], cwd=ROOT)
    (artifact,) = glob.glob(str(tmp_path / "pgfleet-core-*.tar.gz"))
    names = subprocess.run(["tar", "tzf", artifact], capture_output=True, text=True, check=True).stdout.split()
    tops = {name.split("/")[0] for name in names}
    assert not tops & {"lab", "molecule", "Makefile", "ansible.cfg", "inventories", "collections", ".ci", "bench", "requirements.txt"}
    assert {"roles", "playbooks", "plugins", "LICENSE", "README.md", "site.yml"} <= tops
    assert not [name for name in names if name.startswith(("playbooks/collections", "tests/integration"))]
    run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", bare_env["ANSIBLE_COLLECTIONS_PATH"], artifact], cwd=tmp_path, **bare_env)
    run(["ansible-playbook", "-i", "localhost,", "--syntax-check", "pgfleet.core.site"], cwd=tmp_path, **bare_env)
    run(["ansible-playbook", "-i", "localhost,", "--syntax-check", "pgfleet.core.restore"], cwd=tmp_path, **bare_env)


def test_declared_dependencies_are_the_collections_the_code_calls():
    called = set()
    for path in glob.glob(os.path.join(ROOT, "roles", "**", "*.yml"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "playbooks", "*.yml")) + glob.glob(os.path.join(ROOT, "plugins", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            # A comment may name one; ansible-core's own Python modules (ansible.utils.display) are not collections.
            code = "\n".join(line for line in f if not line.lstrip().startswith(("#", "from ansible.", "import ansible.")))
        called |= set(re.findall(r"\b([a-z]+\.[a-z_]+)\.[a-z0-9_]+(?=[:\s(\"'])", code))
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        declared = set(yaml.safe_load(f)["dependencies"])
    with open(os.path.join(ROOT, "collections", "requirements.yml"), encoding="utf-8") as f:
        required = {entry["name"] for entry in yaml.safe_load(f)["collections"]}
    collections = {name for name in called if name.split(".")[0] in {"community", "kubernetes", "amazon", "containers", "awx"}
                   or name in {"ansible.posix", "ansible.utils", "ansible.netcommon"}}
    known = declared | {"pgfleet.core"}
    assert collections - known == set()
    assert declared - collections == set() and required == declared
