# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's and Molecule's images only (not part of the collection): keep the bytecode
Python compiles for source imported from a zip archive.

Every Ansible task sends its module as a zip (AnsiballZ) that Python imports from, and a zip
without bytecode is compiled anew on each import: ansible.module_utils.basic and the rest,
for every task on every host. In the lab's containers that was over a quarter of the CPU of
a task (60 stat, systemd and copy tasks on one container: 26.0 CPU-s and 24.5 s before,
18.0 CPU-s and 17 s after, measured one after the other). Here the compiled
code is kept per user, keyed by the source and its path inside the archive, and given the
archive's current path; the modules run exactly as on a real host, which compiles them per
task. Loaded at interpreter start by pgfleet_pyc_cache.pth (lab/build-image.sh).
"""

import functools
import hashlib
import marshal
import os
import zipimport

CACHE_DIR = "/var/cache/pgfleet-pyc"  # mode 1777: one directory per user below, its own 0700


def _renamed(code, filename):
    """CODE and the code objects inside it, with FILENAME as theirs (for tracebacks)."""
    consts = tuple(_renamed(c, filename) if hasattr(c, "co_code") else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


@functools.lru_cache(maxsize=None)
def _own_dir(cache_dir):
    """This user's directory, or None when another user holds its name (once per process:
    a module run imports dozens of files)."""
    mine = os.path.join(cache_dir, str(os.getuid()))
    try:
        os.mkdir(mine, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    return mine if os.lstat(mine).st_uid == os.getuid() else None


def cached_compile(compile_source):
    """zipimport's _compile_source(pathname, source), kept in CACHE_DIR."""
    def compiled(pathname, source):
        inner = pathname.rpartition(".zip" + os.sep)[2]  # the archive's own path changes per task
        mine = _own_dir(CACHE_DIR)
        if mine is None:
            return compile_source(pathname, source)
        path = os.path.join(mine, hashlib.sha256(inner.encode() + b"\0" + source).hexdigest())
        try:
            with open(path, "rb") as kept:
                return _renamed(marshal.loads(kept.read()), pathname)  # load(file) reads in small pieces
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = compile_source(pathname, source)
        partial = f"{path}.{os.getpid()}"
        try:
            with open(partial, "wb") as kept:
                kept.write(marshal.dumps(code))
            os.replace(partial, path)  # whole or not at all: tasks run side by side
        except OSError:
            pass
        return code
    return compiled


if hasattr(zipimport, "_compile_source"):
    zipimport._compile_source = cached_compile(zipimport._compile_source)  # pylint: disable=protected-access
