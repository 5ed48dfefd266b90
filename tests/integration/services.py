"""Real peers for integration tests: a TLS certificate authority, pgBackRest
repositories (posix, or S3 served by moto on loopback) for PgCluster primaries."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from pgcluster import free_port


def make_tls(directory: str, hosts=("localhost", "127.0.0.1")) -> dict:
    """A private CA and a server certificate for HOSTS (names and addresses), with openssl."""
    def ssl(*argv):
        subprocess.run(["openssl", *argv], cwd=directory, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=pgfleet test CA", "-keyout", "ca.key", "-out", "ca.crt")
    san = ",".join(("IP:" if h[0].isdigit() else "DNS:") + h for h in hosts)
    with open(os.path.join(directory, "ext.cnf"), "w", encoding="utf-8") as f:
        f.write(f"subjectAltName={san}\n")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={hosts[0]}",
        "-keyout", "server.key", "-out", "server.csr")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.crt")
    return {name: os.path.join(directory, name) for name in ("ca.crt", "server.crt", "server.key")}


def enable_ssl(cluster, tls: dict) -> None:
    """Server TLS on CLUSTER with copies of the certificate its OS user owns."""
    pw = pwd.getpwnam("postgres")
    for name in ("server.crt", "server.key"):
        target = os.path.join(cluster.base, name)
        shutil.copy(tls[name], target)
        os.chown(target, pw.pw_uid, pw.pw_gid)
        os.chmod(target, 0o600)
    cluster.append_conf(f"ssl = on\nssl_cert_file = '{cluster.base}/server.crt'\n"
                        f"ssl_key_file = '{cluster.base}/server.key'\n")


class BackRestRepo:
    """A pgBackRest configuration for one stanza of PRIMARY, repository in a scratch directory
    (posix) or in an S3 bucket (s3=dict(endpoint, port, bucket, ca_file))."""

    def __init__(self, primary, stanza="demo", s3=None, cipher_pass=None):
        pw = pwd.getpwnam("postgres")
        self.base = tempfile.mkdtemp(prefix="pgfleet-backrest-", dir="/var/tmp")
        os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.stanza = stanza
        self.primary = primary
        self.config = os.path.join(self.base, "pgbackrest.conf")
        lines = ["[global]", f"log-path={self.base}/log", f"lock-path={self.base}/lock",
                 f"spool-path={self.base}/spool", "log-level-console=warn", "log-level-file=off",
                 "archive-timeout=10", "start-fast=y", "repo1-retention-full=2"]
        if s3:
            lines += ["repo1-type=s3", f"repo1-s3-endpoint={s3['endpoint']}", f"repo1-storage-port={s3['port']}",
                      f"repo1-s3-bucket={s3['bucket']}", "repo1-s3-region=us-east-1", "repo1-s3-uri-style=path",
                      "repo1-s3-key=testing", "repo1-s3-key-secret=testing", f"repo1-storage-ca-file={s3['ca_file']}",
                      "repo1-path=/pgbackrest"]
        else:
            lines.append(f"repo1-path={self.base}/repo")
        if cipher_pass:
            lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={cipher_pass}"]
        lines += [f"[{stanza}]", f"pg1-path={primary.datadir}", f"pg1-port={primary.port}",
                  f"pg1-socket-path={primary.socket_dir}"]
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chown(self.config, pw.pw_uid, pw.pw_gid)

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={self.stanza} archive-push %p"

    def attach(self) -> None:
        """WAL archiving of the primary into this repository (archive_mode needs a restart)."""
        self.primary.append_conf(f"archive_mode = on\narchive_command = '{self.archive_command()}'\n")

    def run(self, *args: str) -> str:
        proc = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={self.config}",
                               f"--stanza={self.stanza}", *args], capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"pgbackrest {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def destroy(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class TlsProxy:
    """TLS in front of a plain TCP service on loopback, closing with TLS close_notify.

    moto's development server closes connections without a TLS shutdown, which
    pgBackRest (OpenSSL 3) rightly reports as a truncated response; a real S3 endpoint
    does not do that, so the test puts a well-behaved TLS terminator in front of it.
    """

    def __init__(self, target_port: int, certfile: str, keyfile: str, listen: str = "127.0.0.1", port: int = 0):
        import ssl
        self.listen = listen
        self.port = port or free_port()
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, up_writer), self._pipe(up_reader, client_writer))

    def _serve(self, started):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, self.listen, self.port, ssl=self.context))
        started.set()
        self.loop.run_forever()
        server.close()

    def stop(self):
        def shutdown():
            # Open pipes end cancelled, not garbage-collected on a closed loop.
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_soon(self.loop.stop)
        self.loop.call_soon_threadsafe(shutdown)
        self.thread.join(10)


def start_moto() -> tuple:
    """moto's server (every AWS service it mocks) on a free loopback port: (process, port)."""
    port = free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)


def stop_process(proc) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class MotoS3:
    """moto's S3 server on loopback behind TLS (the stand-in for an off-site S3 bucket)."""

    def __init__(self, tls: dict, bucket="pgfleet-backups", listen="127.0.0.1", port=0):
        """LISTEN and PORT: where its TLS side listens (a podman bridge's gateway for pods)."""
        self.bucket = bucket
        self.tls = tls
        self.proc, self.http_port = start_moto()
        self.proxy = TlsProxy(self.http_port, tls["server.crt"], tls["server.key"], listen, port)
        self.port = self.proxy.port
        import boto3
        host = "localhost" if listen == "127.0.0.1" else listen
        self.client = boto3.client("s3", endpoint_url=f"https://{host}:{self.port}", region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing",
                                   verify=tls["ca.crt"])
        self.client.create_bucket(Bucket=bucket)

    def keys(self, prefix: str) -> list:
        """The object keys under PREFIX."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def repo_options(self) -> dict:
        return dict(endpoint="localhost", port=self.port, bucket=self.bucket, ca_file=self.tls["ca.crt"])

    def stop(self) -> None:
        self.proxy.stop()
        stop_process(self.proc)
