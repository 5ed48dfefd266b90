"""The example production inventory (inventories/example): SSH hosts, secrets from Ansible
Vault and from AWS Secrets Manager (moto's server on loopback stands in for AWS, reached
through the lookup's own AWS_URL setting; nothing in the inventory names it). Each host's
variables resolve to the stored secrets on the controller, as a run would use them; a
secret missing from Secrets Manager or a wrong Vault password stops the run naming it."""

import json
import os
import shutil
import subprocess

import boto3
import pytest

from services import start_moto, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventories", "example")
VAULT_PASSWORD = os.path.join(ROOT, "tests", "integration", "example-vault-password")
REGION = "eu-west-1"  # example_secrets_region

STORED = {name: f"stored-{name}-value" for name in [
    "pgbouncer_auth_password", "redis_app_password", "redis_exporter_password", "exporters_basic_auth_password",
    "pg_logical_dump_passphrase", "pgbackrest_s3_cipher_pass", "backup_s3_key", "backup_s3_key_secret",
    "pg_orders_service_password", "pg_accounts_service_password", "fleet_ca_key", "fleet_ca_cert"]}
VAULTED = {"pg_replication_password": "example-replication-secret", "redis_admin_password": "example-redis-admin-secret",
           "pgbackrest_cipher_pass": "example-backup-cipher-passphrase-0123456789"}


@pytest.fixture(name="aws", scope="module")
def fixture_aws():
    proc, port = start_moto()
    env = {"AWS_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    client = boto3.client("secretsmanager", endpoint_url=env["AWS_URL"], region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for name, value in STORED.items():
        client.create_secret(Name=f"pgfleet/prod/{name}", SecretString=value)
    yield env, client
    stop_process(proc)


def resolve(env, pattern, expression):
    """Template EXPRESSION for each host of PATTERN on the controller (debug runs no module on
    the hosts, so none needs to exist); return ({host: value}, rc, output)."""
    proc = subprocess.run(["ansible", "-i", INVENTORY, pattern, "--vault-password-file", VAULT_PASSWORD,
                           "-m", "ansible.builtin.debug", "-a", "msg={{ " + expression + " }}"],
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **env),
                          capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)
    hosts = report["plays"][0]["tasks"][0]["hosts"]
    return {host: result.get("msg") for host, result in hosts.items()}, proc.returncode, proc.stdout + proc.stderr


def test_every_host_resolves_its_secrets_from_vault_and_secrets_manager(aws):
    env, _ = aws
    values, rc, output = resolve(env, "all", "{'exporters': exporters_basic_auth_password, 'dump': pg_logical_dump_passphrase}")
    assert rc == 0, output
    assert len(values) == 7
    assert all(v == {"exporters": STORED["exporters_basic_auth_password"], "dump": STORED["pg_logical_dump_passphrase"]}
               for v in values.values()), values

    values, rc, output = resolve(env, "postgres", "{'replication': pg_replication_password, "
                                                  "'users': pg_users | items2dict(key_name='name', value_name='password'), "
                                                  "'repos': pgbackrest_repos | map(attribute='cipher_pass') | list, "
                                                  "'s3': [pgbackrest_repos[1].key, pgbackrest_repos[1].key_secret]}")
    assert rc == 0, output
    assert set(values) == {"db1.example.internal", "db2.example.internal", "db3.example.internal"}
    for value in values.values():
        assert value == {"replication": VAULTED["pg_replication_password"],
                         "users": {"orders_service": STORED["pg_orders_service_password"],
                                   "accounts_service": STORED["pg_accounts_service_password"]},
                         "repos": [VAULTED["pgbackrest_cipher_pass"], STORED["pgbackrest_s3_cipher_pass"]],
                         "s3": [STORED["backup_s3_key"], STORED["backup_s3_key_secret"]]}

    values, rc, output = resolve(env, "redis", "[redis_admin_password, redis_exporter_password, redis_users[0].password]")
    assert rc == 0, output
    assert values == {"cache1.example.internal": [VAULTED["redis_admin_password"], STORED["redis_exporter_password"],
                                                  STORED["redis_app_password"]]}
    values, rc, output = resolve(env, "all", "[fleet_tls_ca_key_content, fleet_tls_ca_cert_content]")
    assert rc == 0 and set(map(tuple, values.values())) == {(STORED["fleet_ca_key"], STORED["fleet_ca_cert"])}, output
    values, rc, output = resolve(env, "pgbouncer", "pgbouncer_auth_password")
    assert rc == 0 and values == {"bouncer1.example.internal": STORED["pgbouncer_auth_password"]}, output


def test_a_secret_missing_from_secrets_manager_stops_the_run_naming_it(aws):
    env, client = aws
    client.delete_secret(SecretId="pgfleet/prod/redis_exporter_password", ForceDeleteWithoutRecovery=True)
    try:
        _, rc, output = resolve(env, "redis", "redis_exporter_password")
        assert rc != 0 and "pgfleet/prod/redis_exporter_password" in output, output
    finally:
        client.create_secret(Name="pgfleet/prod/redis_exporter_password", SecretString=STORED["redis_exporter_password"])


def test_a_wrong_vault_password_stops_the_run(aws, tmp_path):
    env, _ = aws
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    proc = subprocess.run(["ansible", "-i", INVENTORY, "postgres", "--vault-password-file", str(wrong),
                           "-m", "ansible.builtin.debug", "-a", "msg={{ pg_replication_password }}"],
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **env),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0 and "Decryption failed" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert VAULTED["pg_replication_password"] not in proc.stdout + proc.stderr


def test_site_yml_accepts_the_example_inventory():
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, "--syntax-check", "--vault-password-file", VAULT_PASSWORD,
                           os.path.join(ROOT, "site.yml")],
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def site_yml(env, inventory, *args):
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), "--vault-password-file", VAULT_PASSWORD, "-vvv",
                           os.path.join(ROOT, "site.yml"), *args],
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_TIMEOUT="5", **env),
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_site_yml_checks_every_hosts_secrets_before_contacting_a_host(aws):
    env, _ = aws
    rc, output = site_yml(env, INVENTORY)
    # Every host passed the inventory check; then the facts play tried the (invented) hosts.
    assert "TASK [pgfleet.core.preflight : Check what each role of this host needs from the inventory]" in output
    assert "PLAY [Gather the facts of every host once]" in output and rc != 0
    for secret in [*STORED.values(), *VAULTED.values()]:
        assert secret not in output


def test_a_missing_secret_stops_site_yml_before_any_host_is_contacted(aws, tmp_path):
    env, _ = aws
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory)
    secrets = inventory / "group_vars" / "all" / "secrets.yml"
    secrets.write_text("".join(line for line in secrets.read_text().splitlines(keepends=True)
                               if not line.startswith("pgbouncer_auth_password:")))
    rc, output = site_yml(env, inventory)
    assert rc != 0
    assert "bouncer1.example.internal" in output and "pgbouncer_auth_password" in output, output[-3000:]
    assert "PLAY [Gather the facts of every host once]" not in output, output[-3000:]

    # A run the tags keep away from PgBouncer does not need its secret: it passes the check
    # and goes on to the (invented) hosts.
    for tags in (["--tags", "redis,postgresql"], ["--skip-tags", "pgbouncer"]):
        rc, output = site_yml(env, inventory, *tags)
        assert "PLAY [Gather the facts of every host once]" in output and rc != 0, (tags, output[-3000:])
        assert "pgbouncer_auth_password" not in output, (tags, output[-3000:])


def test_an_inventory_without_fleet_hosts_is_refused(aws, tmp_path):
    env, _ = aws
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    postgresql:\n      hosts:\n        db1.example.internal:\n")
    rc, output = site_yml(env, inventory)
    assert rc != 0 and "The inventory has no host in any group site.yml serves" in output, output[-3000:]
    assert "PLAY [Gather the facts of every host once]" not in output
