"""A converged fleet: `ansible-playbook site.yml --check --diff` must find nothing to do.

Molecule's idempotence step proves a second real run changes nothing; this proves the
dry run an operator makes before a change window agrees, and fails nowhere.
"""

from conftest import changed_tasks, converge


def test_check_mode_on_converged_fleet_reports_no_changes():
    report = converge("--check", "--diff")
    stats = report["stats"]
    assert stats, "the check run reached no host"
    changed = changed_tasks(report)
    assert changed == [], "check mode predicts changes on a converged fleet: " + "; ".join(changed)
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
