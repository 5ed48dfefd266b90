"""redis_persistence's value normalisation: sizes and save points as Redis prints them."""

import pytest

from ansible_collections.pgfleet.core.plugins.modules.redis_persistence import redis_size, save_points


@pytest.mark.parametrize("text, size", [("64mb", 64 * 1024 ** 2), ("64m", 64 * 1000 ** 2), ("1gb", 1024 ** 3),
                                        ("100", 100), ("5 KB", 5 * 1024), ("0", 0)])
def test_sizes_use_redis_units(text, size):
    assert redis_size(text) == size


@pytest.mark.parametrize("text", ["", "mb", "-1mb", "1.5gb", "10tb", "64 mega"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        redis_size(text)


def test_save_points_as_config_get_prints_them():
    assert save_points(["3600 1", " 300  100 ", "060 10000"]) == "3600 1 300 100 60 10000"
    assert save_points([]) == ""


@pytest.mark.parametrize("point", ["3600", "3600 1 2", "0 1", "an hour", "-1 1"])
def test_bad_save_points(point):
    with pytest.raises(ValueError):
        save_points([point])
