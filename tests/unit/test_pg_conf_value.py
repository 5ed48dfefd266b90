"""pg_conf_value renders inventory values for postgresql.conf."""

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.pgfleet.core.plugins.filter.pg_conf import pg_conf_value


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "on"),
        (False, "off"),
        (100, "100"),
        (0.9, "0.9"),
        ("4MB", "'4MB'"),
        ("pg_stat_statements,pgaudit", "'pg_stat_statements,pgaudit'"),
        ("it's", "'it''s'"),
        ("C:\\temp", "'C:\\\\temp'"),
        ("", "''"),
    ],
)
def test_renders_each_type(value, rendered):
    assert pg_conf_value(value) == rendered


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_rejects_line_breaks_and_nul_naming_the_value(bad):
    with pytest.raises(AnsibleFilterError, match="line break or NUL"):
        pg_conf_value(bad)


@pytest.mark.parametrize("bad", [None, ["a"], {"a": 1}])
def test_rejects_other_types_naming_the_type(bad):
    with pytest.raises(AnsibleFilterError, match=type(bad).__name__):
        pg_conf_value(bad)


@given(st.text().filter(lambda s: not any(c in s for c in "\n\r\0")))
def test_quoted_string_unescapes_to_the_original(text):
    rendered = pg_conf_value(text)
    assert rendered[0] == rendered[-1] == "'"
    inner = rendered[1:-1]
    # every quote and backslash inside is doubled, so none stands alone
    assert inner.replace("''", "").count("'") == 0
    assert inner.replace("''", "'").replace("\\\\", "\\") == text
