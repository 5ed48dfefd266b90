# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql.conf settings derived from the host: memory, cores and storage."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: pg_tune
short_description: PostgreSQL memory, WAL, I/O, parallelism and autovacuum settings for a host
version_added: 0.1.0
description:
  - The one place where pgfleet derives postgresql.conf from the host. Every value is a
    starting point that the inventory can override (C(pg_parameters) wins in the role).
  - "Memory: shared_buffers 25% of RAM (at most 32 GB), effective_cache_size 75%,
    maintenance_work_mem RAM/16 between 64 MB and 2 GB, work_mem the RAM left after
    shared_buffers shared by three sorts per connection, between 4 MB and 256 MB."
  - "WAL: min/max_wal_size 1/4 GB (4/16 GB from 16 GB of RAM), checkpoint_timeout 15min,
    checkpoint_completion_target 0.9, wal_compression lz4."
  - "Storage: random_page_cost 1.1 and effective_io_concurrency 200 on SSD, 4 and 2 on HDD."
  - "Parallelism: max_worker_processes and max_parallel_workers follow the cores (at least 8
    workers), half the cores (1 to 4) per gather and per maintenance command."
  - "Autovacuum: 3 workers (5 from 8 cores), scale factors 0.05/0.02, cost limit 2000 on SSD."
  - "Huge pages: C(try): used when the host reserves them (vm.nr_hugepages, worth it from a
    shared_buffers of about 8 GB), never a failed start when it does not."
options:
  _input:
    description: The host.
    type: dict
    required: true
    suboptions:
      memory_mb: {description: RAM in MB (ansible_memtotal_mb)., type: int, required: true}
      cores: {description: CPU cores (ansible_processor_vcpus)., type: int, required: true}
      storage: {description: Storage type., type: str, choices: [ssd, hdd], default: ssd}
      max_connections: {description: Connections the server accepts., type: int, default: 200}
author: pgfleet developers (@pgfleet)
"""

EXAMPLES = r"""
- name: Settings for an 8 GB, 4-core host on SSD
  ansible.builtin.debug:
    msg: "{{ {'memory_mb': 8192, 'cores': 4, 'storage': 'ssd'} | pgfleet.core.pg_tune }}"
"""

RETURN = r"""
_value:
  description: postgresql.conf parameter names and values (memory in MB with its unit).
  type: dict
"""

GB = 1024


def _mb(value):
    return f"{int(value)}MB"


def _clamp(value, low, high):
    return max(low, min(high, value))


def pg_tune(host):
    """Return {parameter: value} for HOST {memory_mb, cores, storage, max_connections}."""
    try:
        memory = int(host["memory_mb"])
        cores = int(host["cores"])
        storage = host.get("storage") or "ssd"
        connections = int(host.get("max_connections") or 200)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"pg_tune needs memory_mb and cores as integers, got {host!r}: {exc}") from exc
    if memory < 256 or cores < 1 or connections < 1:
        raise AnsibleFilterError(f"pg_tune: memory_mb ({memory}) must be at least 256, cores ({cores}) and "
                                 f"max_connections ({connections}) at least 1")
    if storage not in ("ssd", "hdd"):
        raise AnsibleFilterError(f"pg_tune: storage is '{storage}', expected 'ssd' or 'hdd'")
    ssd = storage == "ssd"
    shared_buffers = min(memory // 4, 32 * GB)
    half_cores = _clamp(cores // 2, 1, 4)
    large = memory >= 16 * GB
    return {
        "max_connections": connections,
        "shared_buffers": _mb(shared_buffers),
        "effective_cache_size": _mb(memory * 3 // 4),
        "maintenance_work_mem": _mb(_clamp(memory // 16, 64, 2 * GB)),
        "work_mem": _mb(_clamp((memory - shared_buffers) // (connections * 3), 4, 256)),
        "huge_pages": "try",
        "min_wal_size": _mb(4 * GB if large else GB),
        "max_wal_size": _mb(16 * GB if large else 4 * GB),
        "checkpoint_timeout": "15min",
        "checkpoint_completion_target": 0.9,
        "wal_compression": "lz4",
        "random_page_cost": 1.1 if ssd else 4.0,
        "effective_io_concurrency": 200 if ssd else 2,
        "max_worker_processes": max(8, cores),
        "max_parallel_workers": cores,
        "max_parallel_workers_per_gather": half_cores,
        "max_parallel_maintenance_workers": half_cores,
        "autovacuum_max_workers": 5 if cores >= 8 else 3,
        "autovacuum_vacuum_scale_factor": 0.05,
        "autovacuum_analyze_scale_factor": 0.02,
        "autovacuum_vacuum_cost_limit": 2000 if ssd else -1,
    }


class FilterModule:
    def filters(self):
        return {"pg_tune": pg_tune}
