# Copyright: pgfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_user:
    description: Role to connect as.
    type: str
    default: postgres
  login_password:
    description: Its password (never logged). Empty for peer or certificate authentication.
    type: str
    default: ''
  login_host:
    description: Host to connect to. Empty means the Unix socket in I(login_unix_socket).
    type: str
    default: ''
  login_unix_socket:
    description: Directory of the server's Unix socket. Empty means libpq's default.
    type: path
    default: ''
  login_port:
    description: Port of the server.
    type: int
    default: 5432
  login_db:
    description: Database to connect to; the managed objects live there.
    type: str
    default: postgres
  ssl_mode:
    description: libpq sslmode. Use C(verify-full) with I(ssl_rootcert) across networks.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description: CA certificate file that signed the server's certificate.
    type: path
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
requirements:
  - psycopg2 on the managed host (Debian package python3-psycopg2)
"""
