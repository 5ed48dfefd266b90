# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A role password as the SCRAM-SHA-256 secret PostgreSQL stores, computed on the controller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: scram_secret
short_description: The SCRAM-SHA-256 secret of a PostgreSQL role password
version_added: 0.2.0
description:
  - Turns a password into the secret PostgreSQL keeps in pg_authid
    (C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)), the way the server's own
    C(password_encryption = scram-sha-256) does, so that C(CREATE/ALTER ROLE) never carries the
    plaintext. A statement with a plaintext password lands in pg_stat_statements, the server log
    and pgaudit's log, where pg_monitor members and log readers see it.
  - When O(current) is the role's present secret and the password still matches it, that secret
    is returned unchanged, so a re-run changes nothing. Otherwise a new random 16-byte salt is
    drawn.
  - The password is normalised with SASLprep as the server does (an ASCII password is used as it
    is; one SASLprep refuses is used raw, as the server does).
  - A value that already is a SCRAM secret is returned as it is (an inventory may hold secrets
    instead of passwords). An md5 hash and an empty password are refused.
options:
  _input:
    description: The password.
    type: str
    required: true
  current:
    description: The role's secret now (pg_authid.rolpassword), or nothing for a new role.
    type: str
  iterations:
    description: PBKDF2 iterations (PostgreSQL's scram_iterations, 4096 by default).
    type: int
    default: 4096
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Create a user without sending its password
  community.postgresql.postgresql_user:
    name: app
    password: "{{ app_password | pgfleet.core.scram_secret(current_secrets['app'] | default(none)) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The secret, for C(PASSWORD '...') or postgresql_user's password option.
  type: str
"""

SECRET = re.compile(r"\ASCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)\Z")
MD5 = re.compile(r"\Amd5[0-9a-f]{32}\Z")


def _normalize(password):
    if password.isascii():
        return password.encode()
    try:
        from ansible_collections.community.postgresql.plugins.module_utils.saslprep import saslprep
        return saslprep(password).encode()
    except Exception:  # prohibited characters: the server, too, falls back to the raw bytes
        return password.encode()


def _keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", _normalize(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def _b64(raw):
    return base64.b64encode(raw).decode()


def matches(password, secret):
    """Whether the password is the one the secret was made from."""
    found = SECRET.match(secret or "")
    if not found:
        return False
    iterations, salt, stored, server = found.groups()
    want = _keys(password, base64.b64decode(salt), int(iterations))
    return (hmac.compare_digest(want[0], base64.b64decode(stored))
            and hmac.compare_digest(want[1], base64.b64decode(server)))


def scram_secret(password, current=None, iterations=4096):
    if not isinstance(password, str) or password == "":
        raise AnsibleFilterError("scram_secret: the password is empty or not a string")
    if SECRET.match(password):
        return password
    if MD5.match(password):
        raise AnsibleFilterError("scram_secret: the password is an md5 hash, which cannot become a SCRAM "
                                 "secret; give the password itself or its SCRAM-SHA-256 secret")
    if current and matches(password, current):
        return current
    if not isinstance(iterations, int) or iterations < 1:
        raise AnsibleFilterError(f"scram_secret: iterations must be a positive integer, not {iterations!r}")
    salt = os.urandom(16)
    stored, server = _keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored)}:{_b64(server)}"


class FilterModule:
    def filters(self):
        return {"scram_secret": scram_secret}
