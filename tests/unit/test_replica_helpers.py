"""pg_replica's password file and standby settings helpers (pure functions)."""

from hypothesis import given, strategies as st

from ansible_collections.pgfleet.core.plugins.module_utils.replica import (
    auto_conf_without, conf_quote, conninfo_differs, lsn_to_int, pgpass_fields, pgpass_update,
)

field = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@given(host=field, user=field, password=field)
def test_pgpass_line_round_trips_any_characters(host, user, password):
    text = pgpass_update("", host, 5432, user, password)
    assert pgpass_fields(text.splitlines()[0]) == [host, "5432", "*", user, password]


def test_update_replaces_only_the_matching_entry_and_puts_it_first():
    old = ("# mine\nother:5432:*:replicator:keep\npg1:5432:replication:replicator:old\n"
           "pg1:5432:app_db:replicator:unrelated\npg1:5433:*:replicator:other-port\n")
    new = pgpass_update(old, "pg1", 5432, "replicator", "n:e\\w")
    lines = new.splitlines()
    assert lines[0] == "pg1:5432:*:replicator:n\\:e\\\\w"
    assert "pg1:5432:replication:replicator:old" not in lines
    assert {"# mine", "other:5432:*:replicator:keep", "pg1:5432:app_db:replicator:unrelated",
            "pg1:5433:*:replicator:other-port"} <= set(lines)
    assert pgpass_update(new, "pg1", 5432, "replicator", "n:e\\w") == new  # idempotent


def test_conninfo_compares_only_managed_keys():
    want = {"host": "pg1", "port": "5432", "user": "replicator", "application_name": "pg2", "sslmode": "verify-full"}
    assert not conninfo_differs(dict(want, keepalives="1"), want)
    assert conninfo_differs(dict(want, host="pg9"), want)
    assert conninfo_differs(dict(want, sslrootcert="/ca.crt"), want)


def test_auto_conf_lines_are_replaced_not_duplicated():
    text = "# Do not edit\nwork_mem = '8MB'\nprimary_conninfo = 'host=old'\n primary_slot_name='x'\n"
    assert auto_conf_without(text, ("primary_conninfo", "primary_slot_name")) == "# Do not edit\nwork_mem = '8MB'\n"


def test_quoting_and_positions():
    assert conf_quote("host='a b' passfile=/x\\y") == "'host=''a b'' passfile=/x\\\\y'"
    assert lsn_to_int("1/0000000A") == (1 << 32) + 10 and lsn_to_int(None) is None
