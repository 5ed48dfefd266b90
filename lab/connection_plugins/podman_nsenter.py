# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's and Molecule's way into their containers (not part of the collection)."""

import os
import subprocess

from ansible.errors import AnsibleConnectionFailure
from ansible_collections.community.docker.plugins.connection.nsenter import Connection as NsenterConnection

DOCUMENTATION = r"""
name: podman_nsenter
short_description: Run tasks in a local podman container through nsenter, pipelined
description:
  - Enters the namespaces of a podman container on the controller with nsenter, as
    community.docker.nsenter does, and also pipelines, so a task is one process in the
    container (the module on stdin) instead of six (home directory, temporary directory,
    copy, chmod, run, clean-up). The podman connection costs about a second per task on
    the lab's machines (20 stat tasks took 22.3 s, against 7.2 s with nsenter alone).
  - The container's main process is asked of podman once and kept in a small cache
    (C(/run/pgfleet-nsenter)), checked on each task by the process's start time, so a
    container that stopped or was created again under the same name is asked anew. Asking
    podman cost about 40 ms of CPU per task and host, a tenth of a no-op task.
  - For the lab fleet and Molecule, run as root on the podman host. Real hosts use SSH.
options:
  container:
    description: The container's name (the inventory host name unless ansible_host says otherwise).
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_host
  nsenter_pid:
    description: The container's main process; asked of podman when not given.
    type: int
    vars:
      - name: ansible_nsenter_pid
  pipelining:
    description: Send modules on stdin instead of copying them.
    type: bool
    default: true
    vars:
      - name: ansible_pipelining
    env:
      - name: ANSIBLE_PIPELINING
"""


CACHE_DIR = "/run/pgfleet-nsenter"


def _started(pid):
    """The process's start time (clock ticks since boot), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _cached_pid(name):
    try:
        with open(os.path.join(CACHE_DIR, name), encoding="ascii") as cached:
            pid, started = cached.read().split()
    except (OSError, ValueError):
        return None
    return int(pid) if _started(pid) == started else None


def _remember(name, pid):
    started = _started(pid)
    if started is None:
        return
    os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
    partial = os.path.join(CACHE_DIR, f".{name}.{os.getpid()}")
    with open(partial, "w", encoding="ascii") as cached:
        cached.write(f"{pid} {started}\n")
    os.replace(partial, os.path.join(CACHE_DIR, name))  # whole or not at all: parallel workers write it too


def _podman_pid(name):
    found = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Pid}}", name],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0 or found.stdout.strip() in ("", "0"):
        raise AnsibleConnectionFailure(f"podman container {name} is not running: {found.stderr.strip()}")
    pid = int(found.stdout.strip())
    _remember(name, pid)
    return pid


class Connection(NsenterConnection):
    transport = "podman_nsenter"
    has_pipelining = True

    def _connect(self):
        if not self._connected:
            pid = self.get_option("nsenter_pid")
            if not pid:
                name = self.get_option("container")
                pid = _cached_pid(name) or _podman_pid(name)
            self.set_option("nsenter_pid", pid)
        return super()._connect()
