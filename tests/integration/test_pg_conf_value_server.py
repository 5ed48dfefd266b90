"""PostgreSQL itself reads back exactly what pg_conf_value renders."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.pgfleet.core.plugins.filter.pg_conf import pg_conf_value

# A custom (two-part) parameter accepts any string, so the server shows it back unchanged.
PROBE = "pgfleet.probe"


@pytest.fixture(scope="module")
def probe_cluster(pg_module):
    """pg_file_settings parses the configuration files as they are at query time."""
    pg_module.append_conf("include_if_exists = 'pgfleet_probe.conf'\n")
    return pg_module


def write_probe(cluster, value):
    path = os.path.join(cluster.datadir, "pgfleet_probe.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{PROBE} = {pg_conf_value(value)}\n")
    return path


def test_typed_values_are_applied_as_given(pg):
    params = {"work_mem": "8MB", "jit": False, "max_parallel_workers": 3,
              "random_page_cost": 1.1, "application_name": "it's pgfleet"}
    pg.append_conf("".join(f"{k} = {pg_conf_value(v)}\n" for k, v in params.items()))
    pg.reload()
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", (list(params),))
        got = {name: (setting, unit) for name, setting, unit in cur.fetchall()}
        cur.execute("SELECT name, error FROM pg_file_settings WHERE error IS NOT NULL")
        assert cur.fetchall() == []
    assert got["work_mem"] == ("8192", "kB")
    assert got["jit"][0] == "off"
    assert got["max_parallel_workers"][0] == "3"
    assert got["random_page_cost"][0] == "1.1"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"), max_size=40))
def test_any_string_round_trips_through_the_config_parser(probe_cluster, text):
    path = write_probe(probe_cluster, text)
    rows = probe_cluster.query(
        "SELECT setting, error FROM pg_file_settings WHERE sourcefile = %s AND name = %s", (path, PROBE))
    assert rows == [(text, None)], f"rendered {pg_conf_value(text)!r}"
