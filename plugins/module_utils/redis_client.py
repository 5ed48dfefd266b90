# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Redis connection layer of pgfleet's modules: options, connection (ACL user,
TLS), a record of the commands sent, and waiting on INFO fields."""

from __future__ import annotations

import time
import traceback

from ansible_collections.pgfleet.core.plugins.module_utils.guard import ModuleFailure

try:
    import redis
    REDIS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by RedisSession
    redis = None
    REDIS_IMPORT_ERROR = traceback.format_exc()


def redis_argument_spec():
    """Connection options; mirrored by the pgfleet.core.redis doc fragment."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=6379),
        login_unix_socket=dict(type="path"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        tls=dict(type="bool", default=False),
        tls_ca_cert=dict(type="path"),
        tls_cert=dict(type="path"),
        tls_key=dict(type="path", no_log=False),
        connect_timeout=dict(type="float", default=10.0),
    )


class RedisSession:
    """A redis-py client whose state-changing commands are recorded for `commands`."""

    def __init__(self, module):
        if REDIS_IMPORT_ERROR:
            from ansible.module_utils.basic import missing_required_lib
            raise ModuleFailure(missing_required_lib("redis (Debian package python3-redis)"),
                                exception=REDIS_IMPORT_ERROR)
        self.module = module
        self.errors = redis.exceptions
        self.commands = []
        p = module.params
        kw = dict(username=p["login_user"], password=p["login_password"], socket_timeout=p["connect_timeout"],
                  socket_connect_timeout=p["connect_timeout"], decode_responses=True)
        if p["login_unix_socket"]:
            kw["unix_socket_path"] = p["login_unix_socket"]
        else:
            kw.update(host=p["login_host"], port=p["login_port"])
            if p["tls"]:
                kw.update(ssl=True, ssl_ca_certs=p["tls_ca_cert"], ssl_certfile=p["tls_cert"], ssl_keyfile=p["tls_key"])
        self.where = p["login_unix_socket"] or "%s:%s" % (p["login_host"], p["login_port"])
        self.client = redis.Redis(**kw)
        try:
            self.client.ping()
        except redis.RedisError as e:
            # redis-py's message names the host and the reason, never the password.
            raise ModuleFailure("cannot connect to Redis at %s as %r: %s" % (self.where, p["login_user"] or "default", e)) from None

    def fail(self, msg, **kw):
        raise ModuleFailure(msg, commands=self.commands, **kw)

    @staticmethod
    def describe(args):
        """A command as redis-cli would take it (an empty argument shown as "")."""
        return " ".join(str(a) if str(a) else '""' for a in args)

    def call(self, *args, record=True):
        """Send one command; a Redis error ends the module naming the command."""
        if record:
            self.commands.append(self.describe(args))
        try:
            return self.client.execute_command(*args)
        except redis.RedisError as e:
            self.fail("Redis refused %s: %s" % (self.describe(args), e))

    def config_get(self, name):
        return self.client.config_get(name).get(name)

    def info(self, section):
        return self.client.info(section)

    def wait_info(self, section, done, timeout, what):
        """Poll INFO SECTION until DONE(info) is true; fail after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.info(section)
            if done(info):
                return info
            if time.monotonic() > deadline:
                self.fail("%s did not finish within %d s" % (what, timeout))
            time.sleep(0.05)
