# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of pg_replica: password file lines, standby settings, WAL positions."""

from __future__ import annotations

import re

# Physical replication slot names: lower-case letters, digits and underscores.
SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}\Z")
# application_name: printable ASCII only (the server replaces anything else with '?').
APP_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,63}\Z")

# The conninfo keys pg_replica manages in primary_conninfo.
CONNINFO_KEYS = ("host", "port", "user", "passfile", "application_name", "sslmode", "sslrootcert")


def pgpass_escape(value):
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(*fields):
    line = ":".join(pgpass_escape(v) for v in fields)
    return "\\" + line if line.startswith("#") else line  # a leading '#' would make it a comment


def pgpass_fields(line):
    """The fields of one .pgpass line, read as libpq does (None for a comment, blank or malformed line)."""
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        return None
    fields, cur, escaped = [], "", False
    for ch in line:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(fields) < 4:
            fields.append(cur)
            cur = ""
        else:
            cur += ch
    fields.append(cur)
    return fields if len(fields) == 5 else None


def pgpass_update(text, host, port, user, password):
    """TEXT with exactly one line for HOST:PORT:*:USER carrying PASSWORD, placed first
    among the lines that could match (libpq uses the first match)."""
    wanted = pgpass_line(host, port, "*", user, password)
    kept = []
    for line in text.splitlines():
        f = pgpass_fields(line)
        if f and f[0] == str(host) and f[1] == str(port) and f[2] in ("*", "replication") and f[3] == user:
            continue
        kept.append(line)
    return "\n".join([wanted] + kept) + "\n"


def desired_conninfo(source_host, source_port, user, passfile, application_name, sslmode, sslrootcert):
    info = dict(host=source_host, port=str(source_port), user=user, application_name=application_name,
                sslmode=sslmode)
    if passfile:
        info["passfile"] = passfile
    if sslrootcert:
        info["sslrootcert"] = sslrootcert
    return info


def conninfo_differs(current, desired):
    """Whether the primary_conninfo in force (parsed) differs in a key pg_replica manages."""
    return any((current.get(k) or None) != (desired.get(k) or None) for k in CONNINFO_KEYS)


def lsn_to_int(lsn):
    if not lsn:
        return None
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def int_to_lsn(position):
    return "%X/%X" % (position >> 32, position & 0xFFFFFFFF)


def auto_conf_without(text, keys):
    """postgresql.auto.conf TEXT without the lines that set any of KEYS."""
    pattern = re.compile(r"^\s*(%s)\s*=" % "|".join(re.escape(k) for k in keys))
    return "".join(line for line in text.splitlines(True) if not pattern.match(line))


def conf_quote(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"
