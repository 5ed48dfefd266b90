# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run PostgreSQL and pgBackRest tools as the OS user that owns the cluster.

Modules run as root (become: true) so they can also drive systemd; the tools
themselves must run as the data directory's owner (postgres), which refuses root or
leaves root-owned files behind. This is the one place that knows how.
"""

from __future__ import annotations

import contextlib
import os
import pwd


class OsUser:
    """The OS user NAME: argv prefix for its commands and peer-authenticated sockets."""

    def __init__(self, name):
        try:
            self.pw = pwd.getpwnam(name)
        except KeyError:
            raise ValueError("os_user %r does not exist on this host" % name)
        euid = os.geteuid()
        if euid not in (0, self.pw.pw_uid):
            raise ValueError("this module runs as uid %d; run it as root (become: true) or as %r"
                             % (euid, name))
        self.name = name
        self.is_self = euid == self.pw.pw_uid

    @property
    def home(self):
        return self.pw.pw_dir

    def argv(self, argv):
        """ARGV run as this user (runuser keeps the environment given to the command)."""
        if self.is_self:
            return list(argv)
        return ["runuser", "-u", self.name, "--"] + list(argv)

    @contextlib.contextmanager
    def identity(self):
        """Within the block, connect()s carry this user's credentials, so a Unix socket
        with peer authentication admits it as this user. Only the effective ids change,
        and only for the block. Keep the block to the connect() itself: files this user
        cannot read (the module's own payload, a Python under /root) cannot be imported
        inside it, so ask for client_encoding UTF8 (a codec loaded at start-up)."""
        if self.is_self:
            yield
            return
        # libpq finds ~/.postgresql and ~/.pgpass through HOME: make it this user's.
        home = os.environ.get("HOME")
        os.environ["HOME"] = self.pw.pw_dir
        os.setegid(self.pw.pw_gid)
        os.seteuid(self.pw.pw_uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)
            if home is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = home

    def chown(self, path):
        if not self.is_self:
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
