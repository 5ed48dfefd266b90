#!/usr/bin/env python3
"""How site.yml's time grows with the fleet: the lab's shape with 1, 3 and 6 PostgreSQL
hosts (one primary, the rest replicas; the pgBackRest, PgBouncer, Redis and monitoring
hosts fixed), each converged from fresh containers and then run again with nothing to do.

Prints, per size, the first converge and the no-op re-run in seconds and the tasks each
host ran in the no-op run (each one round trip to the host: what the same run costs over
SSH), then the ratios t(3)/t(1) and t(6)/t(1) of both (goal: t(6)/t(1) <= 2.0). A fleet
takes minutes, so each size is measured once, in the order 1, 3, 6, on a podman network
of its own beside the lab's. BENCH_SIZES="1 3" measures fewer sizes.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sides import headline  # noqa: E402

SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "1 3 6").split()]
FIXED = {"pgbackrest_repo": "bench-backup1", "pgbouncer": "bench-bouncer1", "redis": "bench-redis1",
         "monitoring": "bench-monitor1"}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def inventory(size, directory):
    """The lab inventory's shape with SIZE PostgreSQL hosts, beside the lab's group_vars."""
    pg = ["bench-pg%d" % n for n in range(1, size + 1)]
    with open(os.path.join(ROOT, "inventories", "lab", "hosts.yml"), encoding="utf-8") as f:
        lab = yaml.safe_load(f)
    hosts = {"all": {"vars": dict(lab["all"]["vars"], lab_network="pgfleet-bench", lab_subnet="10.89.142.0/24"),
                     "children": {
                         "postgres": {"children": {"postgres_primary": {"hosts": {pg[0]: None}},
                                                   "postgres_replicas": {"hosts": {h: None for h in pg[1:]}}}},
                         **{group: {"hosts": {host: None}} for group, host in FIXED.items()}}}}
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(hosts, f)
    os.symlink(os.path.join(ROOT, "inventories", "lab", "group_vars"), os.path.join(directory, "group_vars"))
    return path


def playbook(inv, path, *args):
    """Seconds ANSIBLE-PLAYBOOK took and its PLAY RECAP as {host: (ok, changed)}; fails loudly."""
    started = time.monotonic()
    run = subprocess.run(["ansible-playbook", "-i", inv, path, *args], cwd=ROOT, capture_output=True, text=True,
                         check=False, env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"))
    took = time.monotonic() - started
    if run.returncode != 0:
        sys.exit("%s failed:\n%s\n%s" % (path, run.stdout[-4000:], run.stderr[-2000:]))
    return took, {m[1]: (int(m[2]), int(m[3])) for m in RECAP.finditer(run.stdout)}


def measure(size):
    with tempfile.TemporaryDirectory(prefix="pgfleet-scaling-") as directory:
        inv = inventory(size, directory)
        playbook(inv, "lab/fleet.yml")
        try:
            first, _ = playbook(inv, "playbooks/site.yml")
            again, recap = playbook(inv, "playbooks/site.yml")
        finally:
            playbook(inv, "lab/fleet.yml", "-e", "lab_state=absent")
    changed = {host: c for host, (_, c) in recap.items() if c}
    if changed:
        sys.exit("the re-run of site.yml changed something on %s: not a no-op" % changed)
    tasks = {host: ok for host, (ok, _) in sorted(recap.items())}
    print("  %d PostgreSQL hosts: first converge %.0f s, no-op re-run %.0f s (%.2f of the first); tasks per "
          "host in the no-op run: %s" % (size, first, again, again / first,
                                         ", ".join("%s %d" % (h, n) for h, n in tasks.items())), flush=True)
    return first, again


def main():
    print("site.yml on the lab's shape with %s PostgreSQL hosts" % ", ".join(map(str, SIZES)), flush=True)
    times = {size: measure(size) for size in SIZES}
    base = SIZES[0]
    for size in SIZES[1:]:
        for index, what in enumerate(("first converge", "no-op re-run")):
            headline("converge_scaling", "%s t(%d)/t(%d)" % (what, size, base),
                     [times[size][index] / times[base][index]], goal="<= 2.0" if size == 6 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
