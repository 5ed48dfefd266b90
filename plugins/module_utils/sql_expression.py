# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check that a user's SQL expression is one expression before it meets the server.

An RLS USING or WITH CHECK clause is SQL text by nature, so it cannot be a bound
parameter. Before it is sent (inside parentheses), this lexer makes sure it cannot
end the statement or escape those parentheses: no ';', no comment, balanced
parentheses, every literal closed. The server then judges the expression itself.
"""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")


def _is_ident_char(c):
    return c.isalnum() or c in "_$" or ord(c) >= 0x80


def _closing_quote(text, i, backslash_escapes):
    """Index of the quote that closes the one at I (doubled quotes stay inside), or -1."""
    quote, n = text[i], len(text)
    i += 1
    while i < n:
        if backslash_escapes and text[i] == "\\":
            i += 2
        elif text[i] == quote and i + 1 < n and text[i + 1] == quote:
            i += 2
        elif text[i] == quote:
            return i
        else:
            i += 1
    return -1


def expression_error(text):
    """Return why TEXT is not a single self-contained SQL expression, or None."""
    if text is None or not text.strip():
        return "the expression is empty"
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c in "'\"":
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and (i < 2 or not _is_ident_char(text[i - 2]))
            i = _closing_quote(text, i, escapes)
            if i < 0:
                return "a string literal is not closed" if c == "'" else "a quoted identifier is not closed"
        elif c == "$" and not (i > 0 and _is_ident_char(text[i - 1])):
            m = _DOLLAR_TAG.match(text, i)
            if m:
                end = text.find(m.group(0), m.end())
                if end < 0:
                    return "a dollar-quoted string is not closed"
                i = end + len(m.group(0)) - 1
        elif c == ";":
            return "';' would end the statement"
        elif (c == "-" and nxt == "-") or (c == "/" and nxt == "*"):
            return "comments are not allowed in an expression"
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes a parenthesis the expression did not open"
        i += 1
    if depth:
        return "%d parenthesis(es) left open" % depth
    return None
