# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Host of the Redis server.
    type: str
    default: 127.0.0.1
  login_port:
    description: Its port (the TLS port with I(tls=true)).
    type: int
    default: 6379
  login_unix_socket:
    description: Unix socket of the server; used instead of I(login_host) when set.
    type: path
  login_user:
    description: ACL user to authenticate as; unset means the C(default) user.
    type: str
  login_password:
    description: Its password (never logged).
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  tls_ca_cert:
    description: CA certificate that signed the server's certificate.
    type: path
  tls_cert:
    description: Client certificate, when the server asks for one (tls-auth-clients).
    type: path
  tls_key:
    description: Its private key.
    type: path
  connect_timeout:
    description: Seconds to wait for the connection and for each reply.
    type: float
    default: 10.0
"""
