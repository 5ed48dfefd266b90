"""AWX as code (awx/): every survey matches its playbook, proven by running the playbook's
own input check with each survey choice, a value outside them, and each answer left out
(refused exactly when the survey requires it); and awx/configure.yml calls the awx.awx
modules (24.6.1, the pinned bundle's) only with options and choices they have. No AWX server
runs here: the modules' own argument specs stand in for it."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "awx", "job_templates.yml"), encoding="utf-8") as handle:
    TEMPLATES = yaml.safe_load(handle)["awx_job_templates"]
CHECKED = [t for t in TEMPLATES if "check_task" in t]

# Answers each checked playbook accepts, from which one answer at a time is changed.
VALID = {
    "playbooks/backup.yml": {},
    "playbooks/restore.yml": {"restore_confirm": "pg1", "restore_label": "20261124-010000F", "restore_time": "2026-11-24 10:15:00+00"},
    "playbooks/restore_dump.yml": {"dump_database": "app_db"},
    "playbooks/failover.yml": {"failover_candidate": "pg2"},
    "playbooks/upgrade_check.yml": {"upgrade_source": "pg1", "upgrade_target": "pg2"},
    "playbooks/upgrade_prepare.yml": {"upgrade_source": "pg1", "upgrade_target": "pg2"},
}
# Hosts whose every module call is refused at once (nothing on this machine is touched);
# the input checks are assert tasks, which run on the controller.
INVENTORY = {"all": {"vars": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_become": False,
                              "ansible_python_interpreter": sys.executable, "pg_databases": [{"name": "app_db"}]},
                     "children": {"postgres": {"children": {"postgres_primary": {"hosts": {"pg1": None}},
                                                            "postgres_replicas": {"hosts": {"pg2": None}}}},
                                  "pgbackrest_repo": {"hosts": {"repo1": None}}}}}


@pytest.fixture(name="inventory", scope="module")
def fixture_inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("awx") / "hosts.yml"
    path.write_text(yaml.safe_dump(INVENTORY))
    return str(path)


def check_result(inventory, template, answers):
    """(failed, message) of the playbook's check task with ANSWERS as extra vars."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(ROOT, template["playbook"]), "-e", json.dumps(answers)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(proc.stdout)
    results = [result for play in report["plays"] for task in play["tasks"] if task["task"]["name"] == template["check_task"]
               for result in task["hosts"].values()]
    assert results, (template["check_task"], proc.stdout[-2000:])
    failed = [r for r in results if r.get("failed")]
    return bool(failed), " ".join(str(r.get("msg", "")) for r in failed)


def test_every_template_names_a_playbook_and_its_survey_variables_appear_in_it():
    assert len(TEMPLATES) >= 12
    for template in TEMPLATES:
        with open(os.path.join(ROOT, template["playbook"]), encoding="utf-8") as f:
            text = f.read()
        for question in template.get("survey", []):
            assert question["variable"] in text, (template["name"], question["variable"])
            assert question["type"] in {"text", "multiplechoice", "integer", "password"}
            assert ("choices" in question) == (question["type"] == "multiplechoice"), question
            if "default" in question and "choices" in question:
                assert question["default"] in question["choices"], question
    # Every survey with choices or a required answer has a check that can be run here.
    for template in TEMPLATES:
        if any(q["required"] or q["type"] == "multiplechoice" for q in template.get("survey", [])):
            assert template in CHECKED and template["playbook"] in VALID, template["name"]


def check_results(inventory, template, cases):
    """check_result for each answer set of CASES, two ansible-playbook runs at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda answers: check_result(inventory, template, answers), cases))


@pytest.mark.parametrize("template", CHECKED, ids=[t["name"] for t in CHECKED])
def test_the_playbook_accepts_each_choice_and_nothing_else(inventory, template):
    base = VALID[template["playbook"]]
    cases = [("valid answers", None, base)]
    for question in template["survey"]:
        variable = question["variable"]
        cases += [(variable, choice, dict(base, **{variable: choice})) for choice in question.get("choices", [])]
        if question["type"] == "multiplechoice":
            cases.append((variable, "bogus-choice", dict(base, **{variable: "bogus-choice"})))
    for (variable, value, _answers), (failed, message) in zip(cases, check_results(inventory, template, [c[2] for c in cases])):
        if value == "bogus-choice":
            assert failed and value in message, (variable, message)
        else:
            assert not failed, (variable, value, message)


@pytest.mark.parametrize("template", CHECKED, ids=[t["name"] for t in CHECKED])
def test_the_playbook_requires_what_the_survey_requires(inventory, template):
    base = VALID[template["playbook"]]
    # restore_label and restore_time are asked only with the restore_type that uses them:
    # the choices above cover them.
    questions = [q for q in template["survey"] if q["variable"] not in ("restore_label", "restore_time")]
    cases = [{name: value for name, value in base.items() if name != question["variable"]} for question in questions]
    for question, (failed, message) in zip(questions, check_results(inventory, template, cases)):
        assert failed == question["required"], (question["variable"], message)


def module_options(module):
    doc = subprocess.run(["ansible-doc", "-j", module], capture_output=True, text=True, check=True).stdout
    return json.loads(doc)[module]["doc"]["options"]


def test_configure_calls_the_awx_modules_with_their_own_options():
    with open(os.path.join(ROOT, "awx", "configure.yml"), encoding="utf-8") as f:
        (play,) = yaml.safe_load(f)
    calls = [(name, args) for task in play["tasks"] for name, args in task.items() if name.startswith("awx.awx.")]
    assert {name for name, _ in calls} >= {"awx.awx.project", "awx.awx.inventory", "awx.awx.inventory_source", "awx.awx.credential",
                                           "awx.awx.job_template", "awx.awx.schedule", "awx.awx.execution_environment"}
    for name, args in calls:
        options = module_options(name)
        assert set(args) <= set(options), (name, set(args) - set(options))
        for option, value in args.items():
            choices = options[option].get("choices")
            if choices and isinstance(value, str) and "{{" not in value:
                assert value in choices, (name, option, value)
    subprocess.run(["ansible-playbook", "--syntax-check", os.path.join(ROOT, "awx", "configure.yml")], check=True,
                   capture_output=True)


def test_configure_refuses_missing_settings_before_calling_awx(tmp_path):
    env = dict(os.environ, CONTROLLER_HOST="https://127.0.0.1:1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", os.path.join(ROOT, "awx", "configure.yml")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "Give awx_project_url" in proc.stdout
    assert "awx.awx" not in proc.stdout.split("Check the settings")[-1].split("PLAY RECAP")[0].replace("awx_", "")
