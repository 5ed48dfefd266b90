"""The lab images' bytecode cache for modules imported from a zip (lab/pyc_cache.py): the
second import of the same source from another archive is not compiled again, runs the same
and names the new archive in its tracebacks; a changed source is compiled; a directory
another user holds is not used."""

import importlib.util
import os
import sys
import traceback
import zipfile
import zipimport

import pytest

PYC_CACHE = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "pyc_cache.py")
SOURCE = "def fail():\n    raise RuntimeError('from the zip')\n\nANSWER = 42\n"


@pytest.fixture(name="pyc_cache")
def fixture_pyc_cache(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("pyc_cache_under_test", PYC_CACHE)
    module = importlib.util.module_from_spec(spec)
    original = zipimport._compile_source  # pylint: disable=protected-access
    spec.loader.exec_module(module)  # patches zipimport: put back below
    monkeypatch.setattr(zipimport, "_compile_source", original)
    monkeypatch.setattr(module, "CACHE_DIR", str(tmp_path / "cache"))
    os.mkdir(module.CACHE_DIR, 0o1777)
    compiled = []

    def counted(pathname, source):
        compiled.append(pathname)
        return original(pathname, source)

    monkeypatch.setattr(zipimport, "_compile_source", module.cached_compile(counted))
    return module, compiled


def import_from_new_zip(tmp_path, name, source=SOURCE):
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload/__init__.py", "")
        z.writestr("payload/mod.py", source)
    sys.path.insert(0, str(archive))
    try:
        sys.modules.pop("payload", None)
        sys.modules.pop("payload.mod", None)
        return importlib.import_module("payload.mod"), str(archive)
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop("payload", None)
        sys.modules.pop("payload.mod", None)


def test_the_same_source_from_another_archive_is_compiled_once(pyc_cache, tmp_path):
    compiled = pyc_cache[1]
    first = import_from_new_zip(tmp_path, "task1")[0]
    second, archive = import_from_new_zip(tmp_path, "task2")
    assert [p for p in compiled if p.endswith("mod.py")] == [str(tmp_path / "task1.zip" / "payload" / "mod.py")]
    assert second.ANSWER == first.ANSWER == 42
    with pytest.raises(RuntimeError) as raised:
        second.fail()
    assert f"{archive}{os.sep}payload{os.sep}mod.py" in "".join(traceback.format_tb(raised.tb))
    assert oct(os.stat(os.path.join(pyc_cache[0].CACHE_DIR, str(os.getuid()))).st_mode & 0o777) == "0o700"


def test_a_changed_source_is_compiled_again(pyc_cache, tmp_path):
    compiled = pyc_cache[1]
    import_from_new_zip(tmp_path, "task1")
    changed = import_from_new_zip(tmp_path, "task2", SOURCE.replace("42", "43"))[0]
    assert len([p for p in compiled if p.endswith("mod.py")]) == 2 and changed.ANSWER == 43


def test_a_directory_another_user_holds_is_not_used(pyc_cache, tmp_path):
    module, compiled = pyc_cache
    if os.getuid() != 0:
        pytest.skip("needs root to give the directory to another user")  # the test layers run as root
    taken = os.path.join(module.CACHE_DIR, str(os.getuid()))
    os.mkdir(taken, 0o777)
    os.chown(taken, 65534, 65534)
    import_from_new_zip(tmp_path, "task1")
    import_from_new_zip(tmp_path, "task2")
    # Each archive compiled (zipimport compiles twice per import: for the spec, then to run).
    assert len([p for p in compiled if p.endswith("mod.py")]) == 4 and os.listdir(taken) == []
