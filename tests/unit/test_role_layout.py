"""How the roles are put together: each default is set by one role and described in its
argument spec, every entry point a role is entered by (tasks_from) has a spec, and how
PostgreSQL runs (pg_ha) is tested only in postgresql_core."""

import glob
import os
import re

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
ROLES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "roles", "*", "tasks")))
TASKS_FROM = re.compile(r"name: pgfleet\.core\.(\w+)\s*\n\s*tasks_from: ([^\n]+)")
RUNNER_STEP = '"{{ postgresql_core_runner.tasks }}/'


def load(*parts):
    path = os.path.join(ROOT, *parts)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def specs(role):
    return load("roles", role, "meta", "argument_specs.yml")["argument_specs"]


def yaml_files(*tops):
    for top in tops:
        for directory, _subdirs, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith((".yml", ".j2")):
                    yield os.path.join(directory, name)


def test_no_default_is_set_by_two_roles():
    owners = {}
    for role in ROLES:
        for name in load("roles", role, "defaults", "main.yml"):
            owners.setdefault(name, []).append(role)
    assert {name: roles for name, roles in owners.items() if len(roles) > 1} == {}


def test_every_default_is_in_its_roles_spec():
    missing = {}
    for role in ROLES:
        options = specs(role)["main"].get("options") or {}
        names = [name for name in load("roles", role, "defaults", "main.yml") if name not in options]
        if names:
            missing[role] = names
    assert missing == {}


def test_internal_values_are_not_defaults():
    """A role's vars/ outrank the inventory: nothing there may also be a public default."""
    clash = {}
    for role in ROLES:
        internal = set(load("roles", role, "vars", "main.yml")) & set(load("roles", role, "defaults", "main.yml"))
        if internal:
            clash[role] = sorted(internal)
    assert clash == {}


def entry_points_used():
    runners = load("roles", "postgresql_core", "vars", "main.yml")["postgresql_core_runners"]
    used = set()
    for path in yaml_files("roles", "playbooks", "molecule"):
        with open(path) as f:
            text = f.read()
        for role, entry in TASKS_FROM.findall(text):
            entry = entry.strip().strip("\"'")
            if entry.startswith(RUNNER_STEP.strip('"')):
                step = entry[len(RUNNER_STEP) - 1:]
                used.update((role, runner["tasks"] + "/" + step) for runner in runners.values())
            else:
                assert "{{" not in entry, f"{path}: tasks_from {entry} is not a known form"
                used.add((role, entry))
    return used


def test_every_entry_point_has_a_spec_and_a_task_file():
    used = entry_points_used()
    assert ("postgresql_core", "patroni/recover") in used  # the runner steps were found
    assert ("postgresql_server", "validate") in used
    without_spec = sorted(f"{role}:{entry}" for role, entry in used if entry not in specs(role))
    assert without_spec == []
    for role in ROLES:
        for entry in specs(role):
            assert os.path.exists(os.path.join(ROOT, "roles", role, "tasks", entry + ".yml")), f"{role}: {entry}"


def test_only_the_core_tests_how_postgresql_runs():
    branching = re.compile(r"pg_ha\s*(==|!=|\bin\b)|if pg_ha\b")
    found = []
    for path in yaml_files("roles"):
        if os.sep + "postgresql_core" + os.sep in path:
            continue
        with open(path) as f:
            found += [f"{os.path.relpath(path, ROOT)}:{n}" for n, line in enumerate(f, 1)
                      if branching.search(line) and not line.lstrip().startswith("#")]
    assert found == []


def test_every_spec_default_is_a_default_of_the_role():
    """A spec's default that defaults/main.yml lost (a bad edit) would otherwise surface only
    in a converge, as an undefined variable."""
    lost = {}
    for role in ROLES:
        options = specs(role)["main"].get("options") or {}
        defaults = load("roles", role, "defaults", "main.yml")
        names = [name for name, spec in options.items() if "default" in spec and name not in defaults]
        if names:
            lost[role] = names
    assert lost == {}
