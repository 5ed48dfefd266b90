"""A converged fleet: `ansible-playbook site.yml --check --diff` must find nothing to do.

Molecule's idempotence step proves a second real run changes nothing; this proves the
dry run an operator makes before a change window agrees, and fails nowhere. On a converged
fleet no role's package install runs (the apt module loads the package cache each time).
"""

from conftest import assert_check_mode_clean


def test_check_mode_on_converged_fleet_reports_no_changes():
    report = assert_check_mode_clean()
    installs = [(host, task["task"]["name"], result.get("skipped", False))
                for play in report["plays"] for task in play["tasks"]
                for host, result in task["hosts"].items() if result.get("action") == "ansible.builtin.apt"]
    assert len({host for host, _, _ in installs}) == 5, installs  # every host has installs to skip
    ran = [f"{host}: {name}" for host, name, skipped in installs if not skipped]
    assert ran == [], "package installs ran on a converged fleet: " + "; ".join(ran)
