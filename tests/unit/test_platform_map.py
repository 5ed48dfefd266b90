"""The PostgreSQL major version is written out in one place, postgresql_core's platform map:
roles, playbooks, modules, the lab and the tests derive it (a test pins one only where it
checks the platform on purpose, and says so with a 'pins the platform' comment)."""

import os
import re

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
MAP = os.path.join(ROOT, "roles", "postgresql_core", "vars", "main.yml")
SEARCHED = ("roles", "playbooks", "plugins", "lab", "inventories", "molecule", "tests", "bench", "Makefile")
# postgresql-15, postgresql@17-main, /var/lib/postgresql/15/main, /usr/lib/postgresql/17/bin,
# postgresql-17-pgaudit, pg_version: 15, "15-main", patroni@15-main
LITERAL = re.compile(r"postgresql[-@/]1\d\b|\b1\d-main\b|/1\d/(main|bin)\b|pg_version\W+1\d\b|pg_version \| default\(1\d\)")


def files():
    for top in SEARCHED:
        path = os.path.join(ROOT, top)
        if os.path.isfile(path):
            yield path
            continue
        for directory, subdirs, names in os.walk(path):
            subdirs[:] = [d for d in subdirs if d not in ("__pycache__", "promtool")]
            for name in names:
                if name.endswith((".yml", ".yaml", ".j2", ".py", ".sh", ".cfg", ".conf")) or name == "Makefile":
                    yield os.path.join(directory, name)


def test_the_map_names_both_supported_releases():
    with open(MAP, encoding="utf-8") as f:
        versions = yaml.safe_load(f)["postgresql_core_versions"]
    assert versions == {"12": 15, "13": 17}


def test_no_postgresql_version_is_written_out_elsewhere():
    found = []
    this = os.path.abspath(__file__)
    for path in files():
        if os.path.abspath(path) in (this, os.path.abspath(MAP)):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if LITERAL.search(line) and "pins the platform" not in line:
                    found.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert found == [], "a PostgreSQL version outside postgresql_core's map:\n" + "\n".join(found)
