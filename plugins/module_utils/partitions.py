# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure partition arithmetic for pg_partition: periods, names, bounds. No database here."""

from __future__ import annotations

import datetime
import re

TIME_INTERVALS = ("day", "week", "month", "quarter", "year")
# Key types by OID: which intervals they take and how a bound literal is written.
TIME_TYPES = {1082: "date", 1114: "timestamp", 1184: "timestamptz"}
INT_TYPES = {21: "smallint", 23: "integer", 20: "bigint"}
MAX_IDENTIFIER_BYTES = 63

_BOUND = re.compile(r"^FOR VALUES FROM \((?P<lo>.+)\) TO \((?P<hi>.+)\)$")


class Unbounded:
    """MINVALUE / MAXVALUE in a partition bound: compares below / above everything."""

    def __init__(self, sign):
        self.sign = sign

    def __lt__(self, other):
        return self.sign < 0 and not (isinstance(other, Unbounded) and other.sign < 0)

    def __gt__(self, other):
        return self.sign > 0 and not (isinstance(other, Unbounded) and other.sign > 0)

    def __le__(self, other):
        return self < other or self == other

    def __ge__(self, other):
        return self > other or self == other

    def __eq__(self, other):
        return isinstance(other, Unbounded) and other.sign == self.sign

    def __hash__(self):
        return hash(self.sign)

    def __repr__(self):
        return "MINVALUE" if self.sign < 0 else "MAXVALUE"


def align(moment, interval):
    """The start of the period of INTERVAL that contains MOMENT (a naive UTC datetime)."""
    day = datetime.datetime(moment.year, moment.month, moment.day)
    if interval == "day":
        return day
    if interval == "week":
        return day - datetime.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    if interval == "quarter":
        return day.replace(day=1, month=3 * ((moment.month - 1) // 3) + 1)
    if interval == "year":
        return day.replace(day=1, month=1)
    raise ValueError("unknown interval %r" % interval)


def advance(moment, interval, count=1):
    """MOMENT moved COUNT periods of INTERVAL (an aligned naive datetime)."""
    if interval == "day":
        return moment + datetime.timedelta(days=count)
    if interval == "week":
        return moment + datetime.timedelta(weeks=count)
    months = {"month": 1, "quarter": 3, "year": 12}[interval] * count
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def suffix(lower, interval):
    """The documented partition name suffix for the period starting at LOWER."""
    if interval == "integer":
        return "p%d" % lower if lower >= 0 else "pm%d" % -lower
    if interval == "day":
        return lower.strftime("p%Y%m%d")
    if interval == "week":
        year, week = lower.isocalendar()[:2]
        return "p%04dw%02d" % (year, week)
    if interval == "month":
        return lower.strftime("p%Y%m")
    if interval == "quarter":
        return "p%04dq%d" % (lower.year, (lower.month - 1) // 3 + 1)
    return lower.strftime("p%Y")


def partition_name(table, lower, interval):
    name = "%s_%s" % (table, suffix(lower, interval))
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError("partition name %r is longer than PostgreSQL's %d bytes: use a shorter table name"
                         % (name, MAX_IDENTIFIER_BYTES))
    return name


def fit_name(base, suffix):
    """BASE + SUFFIX within PostgreSQL's 63 bytes, BASE cut at a character boundary."""
    budget = MAX_IDENTIFIER_BYTES - len(suffix.encode("utf-8"))
    while len(base.encode("utf-8")) > budget:
        base = base[:-1]
    return base + suffix


def time_ranges(first, last, interval):
    """[(lower, upper)] for every period from FIRST to LAST inclusive (aligned datetimes)."""
    out = []
    lower = first
    while lower <= last:
        upper = advance(lower, interval)
        out.append((lower, upper))
        lower = upper
    return out


def int_ranges(first, last, step):
    """[(lower, upper)] for every step from the one holding FIRST to the one holding LAST."""
    lower = (first // step) * step
    out = []
    while lower <= last:
        out.append((lower, lower + step))
        lower += step
    return out


def literal(value, type_name):
    """The text of a bound as PostgreSQL reads it for a key of TYPE_NAME."""
    if type_name in INT_TYPES.values():
        return str(value)
    if type_name == "date":
        return value.strftime("%Y-%m-%d")
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return text + "+00" if type_name == "timestamptz" else text


def parse_value(text, type_name):
    """A bound value as pg_get_expr prints it (session TimeZone UTC, DateStyle ISO)."""
    text = text.strip()
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return Unbounded(-1 if text.upper() == "MINVALUE" else 1)
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    if type_name in INT_TYPES.values():
        return int(text)
    if type_name == "date":
        return datetime.datetime.strptime(text, "%Y-%m-%d")
    text = re.sub(r"[+-]\d\d(:?\d\d)?$", "", text)  # UTC session: the offset is +00
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.datetime.strptime(text, fmt)


def parse_bound(expr, type_name):
    """(lower, upper) of a range partition, or None for DEFAULT."""
    if expr.strip() == "DEFAULT":
        return None
    m = _BOUND.match(expr.strip())
    if not m:
        raise ValueError("unsupported partition bound %r" % expr)
    return parse_value(m.group("lo"), type_name), parse_value(m.group("hi"), type_name)


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]
