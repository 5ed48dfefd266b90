"""expression_error: one self-contained SQL expression, or a reason why not."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.pgfleet.core.plugins.module_utils.sql_expression import expression_error


@pytest.mark.parametrize("expr", [
    "tenant_id = current_setting('app.tenant_id')::int",
    "owner = current_user AND (state IN ('a', 'b') OR public)",
    "note <> 'it''s; fine -- really /* yes */ (('",
    "\"odd;col\" = 1",
    "body ~ E'\\\\d+\\'; (' ",
    "$$ ; ) -- $$ = body",
    "$tag$ ; ) $tag$ = body",
    "a$b = $1",
    "x = 'é;'",
])
def test_accepts_single_expressions(expr):
    assert expression_error(expr) is None


@pytest.mark.parametrize(("expr", "why"), [
    ("", "empty"),
    ("   ", "empty"),
    ("true; DROP TABLE t", "end the statement"),
    ("true) OR (true", "did not open"),
    ("(true", "left open"),
    ("x = 1 -- comment", "comments"),
    ("x = 1 /* c */", "comments"),
    ("x = 'open", "string literal"),
    ("x = E'open\\'", "string literal"),
    ('"open = 1', "quoted identifier"),
    ("$q$ open", "dollar-quoted"),
])
def test_refuses_with_a_reason(expr, why):
    assert why in expression_error(expr)


@given(st.text())
def test_nothing_after_a_top_level_semicolon_is_accepted(text):
    assert expression_error("x = 1;" + text) is not None


@given(st.text())
def test_an_accepted_expression_cannot_close_the_wrapping_parenthesis(text):
    # Accepted text ends outside every literal and at depth 0: one more ')' escapes.
    if expression_error(text) is None:
        assert expression_error(text + ")") is not None
        assert expression_error(text + ";") is not None


@given(st.text(alphabet=st.characters(blacklist_characters="'\0")))
def test_anything_inside_a_string_literal_is_accepted(text):
    assert expression_error("body = '" + text + "'") is None
