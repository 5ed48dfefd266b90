"""A converged fleet: `ansible-playbook site.yml --check --diff` must find nothing to do.

Molecule's idempotence step proves a second real run changes nothing; this proves the
dry run an operator makes before a change window agrees, and fails nowhere.
"""

from conftest import assert_check_mode_clean


def test_check_mode_on_converged_fleet_reports_no_changes():
    assert_check_mode_clean()
