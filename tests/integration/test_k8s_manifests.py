"""The k8s_postgres role's objects, rendered by ansible-playbook (playbooks/k8s_deploy.yml
with k8s_postgres_render_dir) and validated offline: no Kubernetes API server can run on
these machines, so every object is checked against the OpenAPI schemas of two Kubernetes
releases (kubernetes-validate, strict: unknown fields fail) and against the policies the
role promises (pinned images, probes, resources, non-root, no secret outside a Secret)."""

import glob
import json
import os
import stat
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "playbooks", "k8s_deploy.yml")
KUBERNETES = ["1.34.0", "1.37.0"]  # the oldest and newest releases kubernetes-validate 1.37 knows well
SECRETS = {"k8s_postgres_superuser_password": "su-Pa55-never-in-a-configmap",
           "k8s_postgres_password": "app-Pa55-never-in-a-configmap",
           "k8s_postgres_tls_key": "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"}
INPUTS = dict(SECRETS,
              k8s_postgres_tls_cert="-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n",
              k8s_postgres_tls_ca="-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
              k8s_postgres_client_namespaces=["shop"], k8s_postgres_client_cidrs=["10.20.0.0/16"],
              k8s_postgres_storage_class="fast-ssd", k8s_postgres_memory="2Gi", k8s_postgres_cpu="1500m",
              k8s_postgres_pv={"name": "pgfleet-data-0", "nfs": {"server": "nfs.example.internal", "path": "/export/pg"}})


def render(tmp_path, **extra):
    out = tmp_path / "manifests"
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps(dict(INPUTS, k8s_postgres_render_dir=str(out), **extra)))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", PLAYBOOK, "-e", "@" + str(variables)],
                          env=dict(os.environ, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          timeout=300, check=False)
    return proc, out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    proc, out = render(tmp_path_factory.mktemp("k8s"), k8s_postgres_render_secrets=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for secret in SECRETS.values():
        assert secret not in proc.stdout + proc.stderr, "a secret reached ansible-playbook's output"
    files = sorted(glob.glob(str(out / "*.yml")))
    objects = {}
    for path in files:
        with open(path) as f:
            objects[os.path.basename(path)] = yaml.safe_load(f)
    return out, objects


def by_kind(objects, kind):
    return [o for o in objects.values() if o["kind"] == kind]


def test_every_object_is_rendered(rendered):
    objects = rendered[1]
    kinds = sorted(o["kind"] for o in objects.values())
    assert kinds == sorted(["Namespace", "Secret", "Secret", "ConfigMap", "PersistentVolume", "StatefulSet",
                            "Service", "Service", "PodDisruptionBudget", "NetworkPolicy"]), kinds


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_object_matches_the_kubernetes_schema(rendered, version):
    objects = rendered[1]
    for name, obj in objects.items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name} is not a valid {obj['kind']} for Kubernetes {version}: {e.message} at {list(e.path)}")


def pod_spec(objects):
    (statefulset,) = by_kind(objects, "StatefulSet")
    return statefulset["spec"]["template"]["spec"]


def test_containers_are_pinned_bounded_probed_and_unprivileged(rendered):
    objects = rendered[1]
    spec = pod_spec(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec["initContainers"]:
        name, image = container["name"], container["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert limits["cpu"] and limits["memory"] and requests == limits, f"{name}: requests differ from limits"
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
        assert context["readOnlyRootFilesystem"] is True, name
    for container in spec["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
    for container in spec["containers"] + spec["initContainers"]:
        # A mount inside another (read-only) volume cannot be made: the runtime would have
        # to create its mount point there (podman kube play of the pod showed it).
        paths = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
        nested = [(a, b) for a in paths for b in paths if a != b and b.startswith(a)]
        assert nested == [], f"{container['name']}: nested mounts {nested}"
    (postgres,) = [c for c in spec["containers"] if c["name"] == "postgres"]
    startup = postgres["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] <= 300, "the service must be up within 5 minutes"


def test_no_secret_outside_a_secret_and_secret_files_are_private(rendered):
    out, objects = rendered
    for name, obj in objects.items():
        path = os.path.join(out, name)
        if obj["kind"] == "Secret":
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
            continue
        text = open(path).read()
        for secret in SECRETS.values():
            assert secret.splitlines()[0 if "KEY" not in secret else 1] not in text, f"{name} holds a secret"


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
    (clients, monitoring) = policy["spec"]["ingress"]
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
