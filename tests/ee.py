"""An environment holding exactly what the execution environment's build context lists:
ansible-core, ansible-runner and the Python requirements in a fresh virtualenv, the Galaxy
collections in a fresh home's ~/.ansible/collections (the first path of the project's
ansible.cfg, where the image's /usr/share/ansible/collections would be). Galaxy is not
reachable here: the listed collections are copied from the pinned ansible bundle, the same
versions Galaxy would give within the listed ranges.

Built once per build context (kept under the lab directory, keyed by the context's
requirements) and shared by tests/integration/test_execution_environment.py and the Molecule
jobs run as AWX runs them (molecule/shared/fleet.py, run_job)."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(os.path.dirname(os.path.dirname(yaml.__file__)), "ansible_collections")
LAB = os.environ.get("PGFLEET_LAB_DIR") or os.path.join(ROOT, ".lab")


def run(args, env=None, check=True, cwd=ROOT):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if check:
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def create_context(path):
    """`ansible-builder create` of execution-environment.yml into PATH; returns PATH."""
    run([os.path.join(os.path.dirname(sys.executable), "ansible-builder"), "create",
         "-f", "execution-environment.yml", "-c", str(path)])
    return path


def build_environment(build, refs, venv, collections):
    """The virtualenv (ansible-core, ansible-runner, the Python requirements) and the collections."""
    run([sys.executable, "-m", "venv", venv])
    run([os.path.join(venv, "bin", "pip"), "install", "--quiet", *refs, "-r", os.path.join(build, "requirements.txt")])
    with open(os.path.join(build, "requirements.yml"), encoding="utf-8") as f:
        wanted = [entry["name"] for entry in yaml.safe_load(f)["collections"]]
    while wanted:
        namespace, collection = wanted.pop().split(".")
        target = os.path.join(collections, "ansible_collections", namespace, collection)
        if os.path.exists(target):
            continue
        shutil.copytree(os.path.join(BUNDLE, namespace, collection), target)
        with open(os.path.join(target, "MANIFEST.json"), encoding="utf-8") as f:
            wanted += list(json.load(f)["collection_info"].get("dependencies") or {})


def environment(context):
    """The environment CONTEXT lists (see the module's doc): {'env', 'bin', 'base', 'home'}."""
    build = os.path.join(str(context), "_build")
    with open(os.path.join(str(context), "Containerfile"), encoding="utf-8") as f:
        refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]+)"', f.read()).group(1).split()
    digest = hashlib.sha256(" ".join(refs).encode())
    for name in ("requirements.txt", "requirements.yml"):
        with open(os.path.join(build, name), "rb") as f:
            digest.update(f.read())
    base = os.path.join(LAB, "ee", digest.hexdigest()[:16])
    venv, home = os.path.join(base, "venv"), os.path.join(base, "home")
    collections = os.path.join(home, ".ansible", "collections")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(base + ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two Molecule lanes may ask at once: one builds, the other waits
        if not os.path.exists(os.path.join(base, "ready")):
            shutil.rmtree(base, ignore_errors=True)
            build_environment(build, refs, venv, collections)
            with open(os.path.join(base, "ansible.cfg"), "w", encoding="utf-8") as f:
                f.write("[defaults]\n")
            open(os.path.join(base, "ready"), "w", encoding="utf-8").close()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": home, "ANSIBLE_CONFIG": os.path.join(base, "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": collections, "ANSIBLE_FORCE_COLOR": "0"}
    return {"env": env, "bin": os.path.join(venv, "bin"), "base": base, "home": home}
