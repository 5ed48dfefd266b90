"""The k8s_postgres role's rendered objects run with `podman kube play` (podman 4.3, Debian 12),
the closest stand-in for a kubelet these machines have.

What podman 4.3 cannot take is changed here, and only that (each change is named where it is
made): a StatefulSet or a Job is played as the Pod of its template; the claim template becomes
a PersistentVolumeClaim (a podman volume); Secret volumes, emptyDir and ephemeral volumes
become host directories the test writes (podman 4.3 crashes on Secret volumes and has no emptyDir);
environment from a Secret becomes its value; containerPorts are dropped (podman 4.3 publishes
them on the host); the pod gets the host names a cluster's DNS would
answer (hostAliases). The ConfigMap, the containers, their commands, probes, users, read-only
root filesystems and mounts are the rendered ones.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import time

import yaml

PODMAN_ENV = dict(os.environ, CONTAINERS_CONF=os.environ.get(
    "CONTAINERS_CONF", os.path.join(os.path.dirname(__file__), "..", "..", "lab", "containers.conf")))


def podman(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, env=PODMAN_ENV,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {proc.stderr.strip()[-2000:]}")
    return proc


class KubePlay:
    """Plays pods made of OBJECTS (the role's rendered objects, Secrets included) on NETWORK,
    keeping Secret and emptyDir stand-ins under BASE."""

    def __init__(self, objects: list, base: str, network: str):
        self.objects = objects
        self.base = base
        self.network = network
        self.pods: list[str] = []
        self.volumes: list[str] = []

    def kind(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def secret(self, name: str) -> dict:
        return {k: base64.b64decode(v) for k, v in self.kind("Secret", name)["data"].items()}

    def _secret_dir(self, pod: str, volume: dict, fs_group) -> str:
        """Stand-in for a Secret (or projected Secrets) volume: its items as files, root-owned,
        its mode; with an fsGroup, group fsGroup and group-readable, as the kubelet makes a
        read-only volume's files."""
        path = os.path.join(self.base, pod, volume["name"])
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        if "secret" in volume:
            sources = [dict(volume["secret"], name=volume["secret"]["secretName"])]
            mode = volume["secret"].get("defaultMode", 0o644)
        else:
            sources = [source["secret"] for source in volume["projected"]["sources"]]
            mode = volume["projected"].get("defaultMode", 0o644)
        for spec in sources:
            data = self.secret(spec["name"])
            for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
                if item["key"] not in data and spec.get("optional"):
                    continue
                target = os.path.join(path, item["path"])
                with open(target, "wb") as f:
                    f.write(data[item["key"]])
                os.chown(target, 0, fs_group if fs_group is not None else 0)
                os.chmod(target, mode | 0o440 if fs_group is not None else mode)
        return path

    def _pod(self, name: str, template: dict, claims: dict, hosts: dict) -> dict:
        spec = copy.deepcopy(template["spec"])
        volumes = []
        for volume in spec.get("volumes", []):
            if "secret" in volume or "projected" in volume:  # podman 4.3: a Secret volume crashes kube play
                path = self._secret_dir(name, volume, spec.get("securityContext", {}).get("fsGroup"))
                volume = {"name": volume["name"], "hostPath": {"path": path, "type": "Directory"}}
            elif "emptyDir" in volume or "ephemeral" in volume:  # podman 4.3: neither (a fresh directory)
                path = os.path.join(self.base, name, volume["name"])
                shutil.rmtree(path, ignore_errors=True)
                os.makedirs(path)
                os.chmod(path, 0o1777)
                volume = {"name": volume["name"], "hostPath": {"path": path, "type": "Directory"}}
            elif "persistentVolumeClaim" in volume and volume["name"] in claims:
                volume = {"name": volume["name"], "persistentVolumeClaim": {"claimName": claims[volume["name"]]}}
            volumes.append(volume)
        for volume in claims:
            if volume not in [v["name"] for v in volumes]:  # the StatefulSet's claim template
                volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claims[volume]}})
        spec["volumes"] = volumes
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            # podman 4.3 publishes every containerPort on the host (Kubernetes does not):
            # the ports go, a probe's named port becomes its number.
            ports = {p["name"]: p["containerPort"] for p in container.pop("ports", []) if "name" in p}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                for action in ("tcpSocket", "httpGet"):
                    if action in container.get(probe, {}):
                        port = container[probe][action]["port"]
                        container[probe][action]["port"] = ports.get(port, port)
            env = []
            for var in container.get("env", []):
                if "valueFrom" in var:  # podman 4.3 reads secretKeyRef from podman secrets only
                    ref = var["valueFrom"]["secretKeyRef"]
                    var = {"name": var["name"], "value": self.secret(ref["name"])[ref["key"]].decode()}
                env.append(var)
            if env:
                container["env"] = env
        # What the cluster's DNS would answer for the Services and the S3 endpoint.
        spec["hostAliases"] = [{"ip": ip, "hostnames": [host]} for host, ip in hosts.items()]
        spec["hostname"] = name
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": template["metadata"].get("labels", {})}, "spec": spec}

    def play(self, name: str, template: dict, claims: dict, hosts: dict, restart: str) -> None:
        """Plays pod NAME of TEMPLATE with CLAIMS {volume: claim} (new ones are created)."""
        pod = self._pod(name, template, claims, hosts)
        pod["spec"]["restartPolicy"] = restart
        documents = [self.kind("ConfigMap")]
        existing = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        for claim in claims.values():
            if claim in existing and claim not in self.volumes:  # left by a run that was killed: not this test's
                podman("volume", "rm", "--force", claim, check=False)
                existing.remove(claim)
            if claim not in existing:  # kube play refuses a claim whose volume exists
                documents.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        documents.append(pod)
        path = os.path.join(self.base, name + ".yml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(documents, f, sort_keys=False)
        proc = podman("kube", "play", "--network", self.network, path, check=False)
        self.pods.append(name)
        # The claims, and the volume podman 4.3 makes of a ConfigMap, go with the test.
        self.volumes += [v for v in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
                         if v not in existing and v not in self.volumes]
        if proc.returncode != 0:
            ids = podman("ps", "--all", "--quiet", "--filter", f"pod={name}", check=False).stdout.split()
            logs = "\n".join(podman("logs", i, check=False).stderr[-1500:] + podman("logs", i, check=False).stdout[-1500:]
                             for i in ids)
            raise RuntimeError(f"podman kube play {name}: {proc.stderr.strip()[-1000:]}\n{logs}")

    def ip(self, pod: str) -> str:
        infra = json.loads(podman("pod", "inspect", pod).stdout)
        infra = infra[0] if isinstance(infra, list) else infra
        out = podman("inspect", infra["InfraContainerID"]).stdout
        return json.loads(out)[0]["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def wait(self, pod: str, container: str, timeout: int) -> tuple[int, str]:
        """The exit code and output of a Job's container that ran to its end."""
        full = f"{pod}-{container}"
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", full).stdout.split()
            if state and state[0] in ("exited", "stopped"):
                return int(state[1]), self.logs(pod, container)
            time.sleep(1)
        raise TimeoutError(f"{full} still runs after {timeout} s: {self.logs(pod, container)[-2000:]}")

    def logs(self, pod: str, container: str) -> str:
        proc = podman("logs", f"{pod}-{container}", check=False)
        return proc.stdout + proc.stderr

    def delete(self, pod: str) -> None:
        """As a pod deletion: its containers stopped (SIGINT to PostgreSQL, its STOPSIGNAL) while
        the pod's network lives, as the kubelet does (`podman pod stop` takes the network first,
        and PostgreSQL's last archive_command then waits archive-timeout), then removed; claims stay."""
        names = podman("ps", "--filter", f"pod={pod}", "--format", "{{.Names}}", check=False).stdout.split()
        containers = [n for n in names if n.startswith(pod + "-")]
        if containers:
            podman("stop", "--time", "60", *containers, check=False, timeout=120)
        podman("pod", "rm", "--force", pod, check=False)
        self.pods.remove(pod)

    def destroy(self) -> None:
        for pod in list(self.pods):
            self.delete(pod)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)
