"""The host-derived settings: proportions, bounds, storage and bad input."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgfleet.core.plugins.filter.pg_tune import pg_tune


def mb(value):
    assert value.endswith("MB")
    return int(value[:-2])


def test_a_small_ssd_host():
    tuned = pg_tune({"memory_mb": 8192, "cores": 4, "storage": "ssd"})
    assert mb(tuned["shared_buffers"]) == 2048 and mb(tuned["effective_cache_size"]) == 6144
    assert mb(tuned["maintenance_work_mem"]) == 512
    assert mb(tuned["work_mem"]) == (8192 - 2048) // 600  # 10 MB: three sorts per connection
    assert tuned["random_page_cost"] == 1.1 and tuned["effective_io_concurrency"] == 200
    assert (tuned["max_worker_processes"], tuned["max_parallel_workers"], tuned["max_parallel_workers_per_gather"]) == (8, 4, 2)
    assert tuned["huge_pages"] == "try" and tuned["max_wal_size"] == "4096MB"


def test_a_large_hdd_host_is_bounded():
    tuned = pg_tune({"memory_mb": 256 * 1024, "cores": 64, "storage": "hdd", "max_connections": 500})
    assert mb(tuned["shared_buffers"]) == 32 * 1024  # capped
    assert mb(tuned["maintenance_work_mem"]) == 2048 and mb(tuned["work_mem"]) == (262144 - 32768) // 1500
    assert tuned["huge_pages"] == "try" and tuned["max_wal_size"] == "16384MB"
    assert tuned["random_page_cost"] == 4.0 and tuned["autovacuum_vacuum_cost_limit"] == -1
    assert tuned["max_parallel_workers_per_gather"] == 4 and tuned["autovacuum_max_workers"] == 5


def test_a_tiny_host_keeps_floors():
    tuned = pg_tune({"memory_mb": 512, "cores": 1, "max_connections": 1000})
    assert mb(tuned["work_mem"]) == 4 and mb(tuned["maintenance_work_mem"]) == 64
    assert tuned["max_parallel_workers_per_gather"] == 1


def test_shared_buffers_never_exceed_ram():
    for memory in (256, 1000, 4096, 65536, 10**6):
        assert mb(pg_tune({"memory_mb": memory, "cores": 2})["shared_buffers"]) < memory


@pytest.mark.parametrize("host, word", [
    ({"memory_mb": "lots", "cores": 2}, "lots"),
    ({"cores": 2}, "memory_mb"),
    ({"memory_mb": 100, "cores": 2}, "100"),
    ({"memory_mb": 4096, "cores": 2, "storage": "nvme"}, "nvme"),
])
def test_bad_input_names_the_value(host, word):
    with pytest.raises(AnsibleFilterError, match=word):
        pg_tune(host)
