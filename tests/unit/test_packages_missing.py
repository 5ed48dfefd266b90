"""packages_missing: which packages of a role's install are not on the host, by its package facts."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgfleet.core.plugins.filter.packages import packages_missing

FACTS = {"packages": {"nftables": [{"version": "1.0.9-1"}], "python3-psycopg2": [{"version": "2.9.10-1"}]}}


def test_lists_only_what_is_not_installed_in_the_given_order():
    assert packages_missing(["rsyslog", "nftables", "logrotate"], FACTS) == ["rsyslog", "logrotate"]
    assert packages_missing(["nftables", "python3-psycopg2"], FACTS) == []


def test_a_single_name_is_a_list_of_one():
    assert packages_missing("nftables", FACTS) == []
    assert packages_missing("pgbouncer", FACTS) == ["pgbouncer"]


@pytest.mark.parametrize("facts", [{}, None, {"packages": None}, {"packages": {}}])
def test_without_package_facts_every_package_is_installed_as_before(facts):
    assert packages_missing(["nftables", "pgbouncer"], facts) == ["nftables", "pgbouncer"]


def test_a_pinned_version_or_architecture_is_always_installed():
    assert packages_missing(["nftables=1.0.9-1", "nftables:amd64"], FACTS) == ["nftables=1.0.9-1", "nftables:amd64"]


@pytest.mark.parametrize("bad", [None, 5, ["nftables", 3], {"nftables": 1}])
def test_anything_but_names_is_refused_naming_it(bad):
    with pytest.raises(AnsibleFilterError, match="packages_missing expects"):
        packages_missing(bad, FACTS)
