"""The lab's connection keeps each container's main process so podman is asked once: a
cached pid is used only while that very process (pid and start time) still runs."""

import importlib.util
import os
import subprocess

import pytest

PLUGIN = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "connection_plugins", "podman_nsenter.py")


@pytest.fixture(name="plugin")
def fixture_plugin(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("podman_nsenter", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "CACHE_DIR", str(tmp_path / "cache"))
    return module


def test_a_remembered_running_process_is_used(plugin):
    plugin._remember("lab-pg1", os.getpid())  # pylint: disable=protected-access
    assert plugin._cached_pid("lab-pg1") == os.getpid()  # pylint: disable=protected-access
    assert oct(os.stat(plugin.CACHE_DIR).st_mode & 0o777) == "0o700"


def test_a_process_that_ended_or_another_with_its_pid_is_not_used(plugin):
    child = subprocess.Popen(["sleep", "60"])
    plugin._remember("lab-pg1", child.pid)  # pylint: disable=protected-access
    assert plugin._cached_pid("lab-pg1") == child.pid  # pylint: disable=protected-access
    child.kill()
    child.wait()
    assert plugin._cached_pid("lab-pg1") is None  # pylint: disable=protected-access
    # The same pid with another start time: a container created again, whose pid was reused.
    with open(os.path.join(plugin.CACHE_DIR, "lab-pg1"), "w", encoding="ascii") as cached:
        cached.write(f"{os.getpid()} 1\n")
    assert plugin._cached_pid("lab-pg1") is None  # pylint: disable=protected-access


@pytest.mark.parametrize("content", [None, "", "garbage", "12 34 56"])
def test_a_missing_or_unreadable_entry_is_asked_of_podman(plugin, content):
    if content is not None:
        os.makedirs(plugin.CACHE_DIR)
        with open(os.path.join(plugin.CACHE_DIR, "lab-pg1"), "w", encoding="ascii") as cached:
            cached.write(content)
    assert plugin._cached_pid("lab-pg1") is None  # pylint: disable=protected-access
