"""The k8s_postgres role's objects, rendered by ansible-playbook (playbooks/k8s_deploy.yml
with k8s_postgres_render_dir) and validated offline: no Kubernetes API server can run on
these machines, so every object is checked against the OpenAPI schemas of two Kubernetes
releases (kubernetes-validate, strict: unknown fields fail) and against the policies the
role promises (pinned images, probes, resources, non-root, no secret outside a Secret)."""

import glob
import json
import os
import shutil
import stat
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "playbooks", "k8s_deploy.yml")
RESTORE_PLAYBOOK = os.path.join(ROOT, "playbooks", "k8s_restore.yml")
KUBERNETES = ["1.34.0", "1.37.0"]  # the oldest and newest releases kubernetes-validate 1.37 knows well
SECRETS = {"k8s_postgres_superuser_password": "su-Pa55-never-in-a-configmap",
           "k8s_postgres_password": "app-Pa55-never-in-a-configmap",
           "k8s_postgres_tls_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n",
           "k8s_postgres_backup_s3_key": "AKIAS3KEYNEVERINACONFIGMAP",
           "k8s_postgres_backup_s3_key_secret": "s3-secret-never-in-a-configmap",
           "k8s_postgres_backup_cipher_pass": "cipher-never-in-a-configmap",
           "k8s_postgres_backup_tls_key": "-----BEGIN PRIVATE KEY-----\nnot-the-backup-key\n-----END PRIVATE KEY-----\n"}
INPUTS = dict(SECRETS,
              k8s_postgres_tls_cert="-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n",
              k8s_postgres_tls_ca="-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
              k8s_postgres_client_namespaces=["shop"], k8s_postgres_client_cidrs=["10.20.0.0/16"],
              k8s_postgres_storage_class="fast-ssd", k8s_postgres_memory="2Gi", k8s_postgres_cpu="1500m",
              k8s_postgres_pv={"name": "pgfleet-data-0", "nfs": {"server": "nfs.example.internal", "path": "/export/pg"}},
              k8s_postgres_backup_s3_bucket="pgfleet-backups", k8s_postgres_prometheus_operator=True,
              k8s_postgres_backup_tls_cert="-----BEGIN CERTIFICATE-----\nbackup\n-----END CERTIFICATE-----\n")


def render(tmp_path, playbook=PLAYBOOK, **extra):
    out = tmp_path / "manifests"
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps(dict(INPUTS, k8s_postgres_render_dir=str(out), **extra)))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", playbook, "-e", "@" + str(variables)],
                          env=dict(os.environ, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          timeout=300, check=False)
    return proc, out


def rendered_objects(tmp_path, playbook=PLAYBOOK, **extra):
    proc, out = render(tmp_path, playbook, k8s_postgres_render_secrets=True, **extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for secret in SECRETS.values():
        assert secret not in proc.stdout + proc.stderr, "a secret reached ansible-playbook's output"
    files = sorted(glob.glob(str(out / "*.yml")))
    objects = {}
    for path in files:
        with open(path) as f:
            objects[os.path.basename(path)] = yaml.safe_load(f)
    return out, objects


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return rendered_objects(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def restore_rendered(tmp_path_factory):
    return rendered_objects(tmp_path_factory.mktemp("k8s-restore"), RESTORE_PLAYBOOK,
                            k8s_postgres_restore_target="2026-12-06 10:00:00+00")


def by_kind(objects, kind):
    return [o for o in objects.values() if o["kind"] == kind]


def test_every_object_is_rendered(rendered):
    objects = rendered[1]
    kinds = sorted(o["kind"] for o in objects.values())
    assert kinds == sorted(["Namespace", "Secret", "Secret", "Secret", "ConfigMap", "PersistentVolume", "StatefulSet",
                            "Service", "Service", "PodDisruptionBudget", "NetworkPolicy", "CronJob", "CronJob",
                            "ServiceMonitor", "PrometheusRule"]), kinds


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_matches_the_kubernetes_schema(rendered, restore_rendered, version):
    objects = dict(rendered[1], **restore_rendered[1])
    assert {"persistentvolumeclaim-postgres-restore.yml", "job-postgres-restore.yml"} <= set(objects)
    # The Prometheus Operator's kinds are not in Kubernetes' schemas: promtool checks their rules.
    for name, obj in [(n, o) for n, o in objects.items() if o["apiVersion"] != "monitoring.coreos.com/v1"]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name} is not a valid {obj['kind']} for Kubernetes {version}: {e.message} at {list(e.path)}")


def pod_spec(objects):
    (statefulset,) = by_kind(objects, "StatefulSet")
    return statefulset["spec"]["template"]["spec"]


def cronjob(objects, name):
    (found,) = [o for o in by_kind(objects, "CronJob") if o["metadata"]["name"] == name]
    return found


def job_pod_specs(objects):
    """The backup and drill CronJobs' and the restore Job's pod specs."""
    (job,) = by_kind(objects, "Job")
    return [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in by_kind(objects, "CronJob")] + [
        job["spec"]["template"]["spec"]]


def test_containers_are_pinned_bounded_probed_and_unprivileged(rendered, restore_rendered):
    objects = rendered[1]
    spec = pod_spec(objects)
    for each in [spec] + job_pod_specs(dict(objects, **restore_rendered[1])):
        assert each["securityContext"]["runAsNonRoot"] is True and each["securityContext"]["runAsUser"] != 0
        assert each["automountServiceAccountToken"] is False
        assert_containers_are_pinned_bounded_and_unprivileged(each["containers"] + each.get("initContainers", []))
    for container in spec["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
    (postgres,) = [c for c in spec["containers"] if c["name"] == "postgres"]
    startup = postgres["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] <= 300, "the service must be up within 5 minutes"


def assert_containers_are_pinned_bounded_and_unprivileged(containers):
    for container in containers:
        name, image = container["name"], container["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert limits["cpu"] and limits["memory"] and requests == limits, f"{name}: requests differ from limits"
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
        assert context["readOnlyRootFilesystem"] is True, name
        # A mount inside another (read-only) volume cannot be made: the runtime would have
        # to create its mount point there (podman kube play of the pod showed it).
        paths = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
        nested = [(a, b) for a in paths for b in paths if a != b and b.startswith(a)]
        assert nested == [], f"{container['name']}: nested mounts {nested}"


def test_no_secret_outside_a_secret_and_secret_files_are_private(rendered):
    out, objects = rendered
    for name, obj in objects.items():
        path = os.path.join(out, name)
        if obj["kind"] == "Secret":
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
            continue
        text = open(path).read()
        for secret in SECRETS.values():
            assert secret.splitlines()[1 if "PRIVATE KEY" in secret else 0] not in text, f"{name} holds a secret"


def test_storage_claim_volume_and_config(rendered):
    objects = rendered[1]
    (statefulset,) = by_kind(objects, "StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd" and claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    (volume,) = by_kind(objects, "PersistentVolume")
    assert volume["spec"]["storageClassName"] == "fast-ssd" and volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    (config,) = by_kind(objects, "ConfigMap")
    conf, hba = config["data"]["postgresql.conf"], config["data"]["pg_hba.conf"]
    # pgfleet.core.pg_tune for the 2Gi limit (a quarter in shared_buffers), as on a 2 GB host.
    assert "shared_buffers = '512MB'" in conf and "max_parallel_workers = 2" in conf, conf
    assert "ssl = on" in conf and "password_encryption = 'scram-sha-256'" in conf and "pgaudit" in conf
    # Every pod address once ('localhost,*' binds 127.0.0.1 twice and logs an error).
    assert "listen_addresses = '*'" in conf.splitlines(), conf
    lines = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert all(line[0] in ("local", "hostssl") and line[-1] in ("peer", "scram-sha-256") for line in lines), hba


def test_network_policy_admits_only_the_declared_clients(rendered):
    objects = rendered[1]
    (policy,) = by_kind(objects, "NetworkPolicy")
    clients, monitoring = policy["spec"]["ingress"][:2]
    assert clients["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}} in clients["from"]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in clients["from"]
    assert monitoring["ports"] == [{"protocol": "TCP", "port": 9187}]


def test_secrets_are_not_written_unless_asked(tmp_path):
    proc, out = render(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    written = [yaml.safe_load(open(path))["kind"] for path in glob.glob(str(out / "*.yml"))]
    assert "Secret" not in written and "StatefulSet" in written


@pytest.mark.parametrize("bad, named", [
    ({"k8s_postgres_password": ""}, "k8s_postgres_password is not set"),
    ({"k8s_postgres_image": "localhost/pgfleet-postgres:latest"}, "has no pinned tag"),
    ({"k8s_postgres_storage_size": "twenty gigs"}, "storage_size twenty gigs"),
    ({"k8s_postgres_name": "Postgres_DB"}, "name Postgres_DB"),
    ({"k8s_postgres_pv": {"name": "pv0", "host_path": "/srv/pg"}}, "pv needs"),
])
def test_bad_input_is_named_and_nothing_is_written(tmp_path, bad, named):
    proc, out = render(tmp_path, **bad)
    assert proc.returncode != 0 and named in proc.stdout, proc.stdout[-3000:]
    assert not out.exists()


def test_backups_one_at_a_time_through_tls_with_secrets_from_the_environment(rendered, restore_rendered):
    objects = rendered[1]
    backup = cronjob(objects, "postgres-backup")
    assert backup["spec"]["concurrencyPolicy"] == "Forbid" and backup["spec"]["timeZone"] == "Etc/UTC"
    job_labels = backup["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    for service in by_kind(objects, "Service"):  # a backup pod is never a database endpoint
        assert not set(service["spec"]["selector"].items()) <= set(job_labels.items()), service["metadata"]["name"]
    (config,) = by_kind(objects, "ConfigMap")
    pg_side, backup_side = config["data"]["pgbackrest-pg.conf"], config["data"]["pgbackrest-backup.conf"]
    assert "repo1-cipher-type=aes-256-cbc" in pg_side and "repo1-retention-full=2" in backup_side
    assert "tls-server-auth=postgres-backup=main" in pg_side
    assert "pg1-host=postgres-0.postgres-headless.pgfleet.svc" in backup_side and "pg1-host-type=tls" in backup_side
    conf = config["data"]["postgresql.conf"]
    assert "archive_mode = 'on'" in conf and "archive_command = 'pgbackrest --stanza=main archive-push %p'" in conf, conf
    spec = pod_spec(objects)
    (server,) = [c for c in spec["containers"] if c["name"] == "pgbackrest"]
    assert server["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}, "a backup takes its own CPU"
    drill = cronjob(objects, "postgres-restore-drill")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (scratch,) = [v for v in drill["volumes"] if v["name"] == "drill"]
    assert scratch["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert json.loads(config["data"]["drill.json"])["databases"] == ["app"]
    for each in [c for c in spec["containers"] if c["name"] == "postgres"] + [
            s["containers"][0] for s in job_pod_specs(dict(objects, **restore_rendered[1]))]:
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in each["env"] if "valueFrom" in e}
        expected = {"PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET", "PGBACKREST_REPO1_CIPHER_PASS"}
        if each["name"] != "postgres":  # the Jobs' lock (pgfleet-repo-lock) reads S3 with boto3
            expected |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert refs == dict.fromkeys(expected, "postgres-backup"), each["name"]
        assert each["name"] == "postgres" or each["command"][:2] == ["python3", "/etc/pgfleet/config/pgfleet-repo-lock"]
    (policy,) = by_kind(objects, "NetworkPolicy")
    (backup_in,) = [rule for rule in policy["spec"]["ingress"] if rule["ports"] == [{"protocol": "TCP", "port": 8432}]]
    assert backup_in["from"] == [{"podSelector": {"matchLabels": job_labels}}]


def test_restore_goes_into_a_new_claim_to_the_time_asked(restore_rendered):
    objects = restore_rendered[1]
    (claim,) = by_kind(objects, "PersistentVolumeClaim")
    (job,) = by_kind(objects, "Job")
    spec = job["spec"]["template"]["spec"]
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"] == "postgres-restore"
    script = spec["containers"][0]["args"][0]
    # A side restore archives nothing: its timeline would become the running cluster's "latest".
    assert "restore --archive-mode=off --type=time --target='2026-12-06 10:00:00+00' --target-action=promote" in script, script


@pytest.mark.parametrize("bad, named", [
    ({"k8s_postgres_backup_cipher_pass": ""}, "k8s_postgres_backup_cipher_pass is not set"),
    ({"k8s_postgres_backup_schedule": "daily"}, "backup_schedule daily"),
    ({"k8s_postgres_backup_s3_bucket": "Backups_Bucket"}, "backup_s3_bucket Backups_Bucket"),
    ({"k8s_postgres_restore_target": "yesterday"}, "restore_target yesterday"),
])
def test_bad_backup_input_is_named_and_nothing_is_written(tmp_path, bad, named):
    proc, out = render(tmp_path, RESTORE_PLAYBOOK, **bad)
    assert proc.returncode != 0 and named in proc.stdout, proc.stdout[-3000:]
    assert not out.exists()


NEON = {"k8s_postgres_mode": "neon", "k8s_postgres_neon_host": "ep-cool-leaf-123456.us-east-2.aws.neon.tech",
        "k8s_postgres_superuser_password": ""}


@pytest.fixture(scope="module")
def neon_rendered(tmp_path_factory):
    return rendered_objects(tmp_path_factory.mktemp("k8s-neon"), **NEON)


@pytest.mark.parametrize("version", KUBERNETES)
def test_neon_mode_is_pgbouncer_to_the_endpoint_over_verify_full(neon_rendered, version):
    objects = neon_rendered[1]
    assert sorted(o["kind"] for o in objects.values()) == sorted(
        ["Namespace", "Secret", "Secret", "Secret", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
         "NetworkPolicy", "CronJob"])
    for name, obj in objects.items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name} is not a valid {obj['kind']} for Kubernetes {version}: {e.message} at {list(e.path)}")
    (deployment,) = by_kind(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and deployment["spec"]["replicas"] == 2
    assert_containers_are_pinned_bounded_and_unprivileged(spec["containers"])
    (config,) = by_kind(objects, "ConfigMap")
    ini = config["data"]["pgbouncer.ini"]
    assert "app = host=ep-cool-leaf-123456.us-east-2.aws.neon.tech port=5432 dbname=app" in ini, ini
    assert "server_tls_sslmode = verify-full" in ini and "client_tls_sslmode = require" in ini
    assert "auth_type = scram-sha-256" in ini and SECRETS["k8s_postgres_password"] not in ini
    (policy,) = by_kind(objects, "NetworkPolicy")
    assert {"ports": [{"protocol": "TCP", "port": 5432}]} in policy["spec"]["egress"]
    # Backups: the logical dump CronJob, secrets only from Secrets, the endpoint verified.
    dump = cronjob(objects, "postgres-logical-dump")
    assert dump["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = dump["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert_containers_are_pinned_bounded_and_unprivileged([container])
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "system"
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "postgres-credentials", "key": "password"}}
    settings = json.loads(config["data"]["logical-dump.json"])
    assert settings["host"] == NEON["k8s_postgres_neon_host"] and settings["s3"]["bucket"] == "pgfleet-backups"
    assert "cipher-never" not in config["data"]["logical-dump.json"]


@pytest.mark.parametrize("bad, named", [
    ({"k8s_postgres_neon_host": ""}, "neon_host '' is not the endpoint's host name"),
    ({"k8s_postgres_dump_schedule": "nightly"}, "dump_schedule nightly"),
    ({"k8s_postgres_backup_s3_key": ""}, "k8s_postgres_backup_s3_key is not set"),
])
def test_bad_neon_input_is_named_and_nothing_is_written(tmp_path, bad, named):
    proc, out = render(tmp_path, **dict(NEON, **bad))
    assert proc.returncode != 0 and named in proc.stdout, proc.stdout[-3000:]
    assert not out.exists()


def test_alert_rules_pass_promtool_and_each_fires_and_stays_quiet(rendered, tmp_path):
    objects = rendered[1]
    (rule,) = by_kind(objects, "PrometheusRule")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]
    (tmp_path / "k8s-alerts.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(os.path.join(os.path.dirname(__file__), "promtool", "k8s-alerts.test.yml"), tmp_path)
    check = subprocess.run(["promtool", "check", "rules", "k8s-alerts.yml"], cwd=tmp_path, capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0 and "SUCCESS: 8 rules found" in check.stdout, check.stdout + check.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"BackupFailed", "BackupTooOld", "RestoreDrillFailed", "VolumeUsageHigh"} <= alerts
    tests = yaml.safe_load((tmp_path / "k8s-alerts.test.yml").read_text())
    cases = [c for t in tests["tests"] for c in t["alert_rule_test"]]
    assert alerts == {c["alertname"] for c in cases if c["exp_alerts"]}, "an alert without a case that fires it"
    assert alerts == {c["alertname"] for c in cases if not c["exp_alerts"]}, "an alert without a case that stays quiet"
    run = subprocess.run(["promtool", "test", "rules", "k8s-alerts.test.yml"], cwd=tmp_path, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
