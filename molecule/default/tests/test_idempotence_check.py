"""A converged fleet: `ansible-playbook site.yml --check --diff` must find nothing to do.

Molecule's idempotence step proves a second real run changes nothing; this proves the
dry run an operator makes before a change window agrees, and fails nowhere.
"""

import json
import os
import subprocess

SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))


def test_check_mode_on_converged_fleet_reports_no_changes():
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         os.path.join(SCENARIO, "converge.yml"), "--check", "--diff"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    stats = report["stats"]
    assert stats, "the check run reached no host"
    changed = [
        f"{host}: {task['task']['name']}"
        for play in report["plays"] for task in play["tasks"]
        for host, result in task["hosts"].items() if result.get("changed")
    ]
    assert changed == [], "check mode predicts changes on a converged fleet: " + "; ".join(changed)
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
