"""Throwaway redis-server processes for integration tests: real servers on loopback,
running as Debian's redis user from a directory of their own."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from pgcluster import free_port


class RedisServer:
    def __init__(self, extra: str = ""):
        pw = pwd.getpwnam("redis")
        self.base = tempfile.mkdtemp(prefix="pgfleet-redis-", dir="/var/tmp")
        os.chmod(self.base, 0o755)
        self.dir = os.path.join(self.base, "data")
        os.mkdir(self.dir, 0o750)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.conf_dir = os.path.join(self.base, "etc")
        os.mkdir(self.conf_dir, 0o750)
        os.chown(self.conf_dir, pw.pw_uid, pw.pw_gid)
        self.config = os.path.join(self.conf_dir, "redis.conf")
        self.port = free_port()
        self.logfile = os.path.join(self.base, "redis.log")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.logfile}\n"
                    f"save 3600 1\nappendonly no\n{extra}")
        os.chown(self.config, pw.pw_uid, pw.pw_gid)
        open(self.logfile, "w").close()
        os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
        self.proc = None

    def start(self) -> "RedisServer":
        # setpriv execs redis-server itself (runuser would stay as its parent).
        self.proc = subprocess.Popen(["setpriv", "--reuid=redis", "--regid=redis", "--init-groups",
                                      "redis-server", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log()[-2000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"redis-server did not answer: {self.log()[-2000:]}")
            time.sleep(0.05)

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kw)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """A clean shutdown (SHUTDOWN writes what the configuration says)."""
        try:
            self.client().shutdown()
        except redis.ConnectionError:
            pass
        if self.proc:
            self.proc.wait(30)

    def log(self) -> str:
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()

    def destroy(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)
