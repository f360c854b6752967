"""The real stores the pre-upgrade backup tests run against, each started by the test on a loopback port of its own,
in a directory of its own, and stopped by its pid: Debian's PostgreSQL 15 (what the dump reads) and versitygw, an
S3 server (posix backend, SigV4 with the root keys the test gives it; what the upload writes to).

Test modules take the fixtures by importing them: `from backup_stores import databases, postgres, s3_store`.
"""

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port, run

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def stop_server(server, sig):
    """Stops a server this module started, by its own process (killed after 30 s), and removes its directory."""
    server.proc.send_signal(sig)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    server.log.close()
    shutil.rmtree(server.dir, ignore_errors=True)


class Postgres:
    """Debian's PostgreSQL 15 on a loopback port and its own directory, as the postgres user when run as root
    (initdb refuses root); password logins over TCP (scram-sha-256), as in the chart's PostgreSQL. Stopped by its
    pid."""

    def __init__(self):
        for tool in ("initdb", "postgres", "pg_dump", "pg_restore", "psql"):
            if not (PG_BIN / tool).exists():
                pytest.fail(f"{PG_BIN / tool} is missing: install Debian's postgresql-15 (scripts/test-tools install)")
        self.password = secrets.token_urlsafe(24)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dify-backup-pg-"))
        self.user = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the postgres user (Debian's postgresql-15 package creates it)")
            self.user = entry
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = self.dir / "data"
        initdb = subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "--encoding=UTF8", "--locale=C.UTF-8"], capture_output=True, text=True,
                                **self._as_user())
        if initdb.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            pytest.fail(f"initdb failed: {initdb.stderr.strip()}")
        # The socket trusts (it is in the test's own directory); TCP takes the password, set below over the socket.
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        self.log = open(self.dir / "postgres.log", "w")
        # The server itself is the child (no runuser between), so the signal that stops it reaches it.
        self.proc = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(self.port), "-c",
                                      "listen_addresses=127.0.0.1", "-k", str(self.dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, **self._as_user())
        deadline = time.time() + 30
        while self.psql("postgres", "SELECT 1", check=False, socket=True).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                pytest.fail(f"PostgreSQL did not start: {(self.dir / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)
        # On stdin, never on a command line.
        self.psql("postgres", f"ALTER ROLE postgres PASSWORD '{self.password}'", socket=True)

    def _as_user(self):
        """subprocess arguments that run a child as the postgres user, when we are root."""
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}

    def env(self, **more):
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres",
                   PGPASSWORD=self.password, PATH=f"{PG_BIN}:{os.environ['PATH']}")
        env.update(more)
        return env

    def psql(self, db, sql, check=True, socket=False):
        env = self.env(PGHOST=str(self.dir)) if socket else self.env()
        return run(env, str(PG_BIN / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", db,
                   stdin=sql, check=check)

    def stop(self):
        stop_server(self, signal.SIGINT)  # PostgreSQL's fast shutdown


def s3_client(endpoint, access_key, secret_key):
    """boto3 as the chart's upload script builds it (path style): the test's own view of the store."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        pytest.fail("boto3 is missing from the test venv: run `scripts/test-tools install python` (it pins Dify's)")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=Config(s3={"addressing_style": "path"}))


class S3Store:
    """versitygw with its posix backend on a loopback port and a temp directory: single-account mode, the root keys
    (random per run) given in its environment, never on its command line. Stopped by its pid."""

    def __init__(self):
        binary = shutil.which("versitygw")
        if binary is None:
            pytest.fail("versitygw is not on PATH: run `scripts/test-tools install versitygw` and put "
                        "`scripts/test-tools path` on PATH")
        self.access_key = "backup-" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(30)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="dify-backup-s3-"))
        (self.dir / "data").mkdir()
        self.log = open(self.dir / "versitygw.log", "w")
        env = {"PATH": os.environ["PATH"], "ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key}
        self.proc = subprocess.Popen([binary, "--port", f"127.0.0.1:{self.port}", "--quiet", "posix",
                                      str(self.dir / "data")], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = s3_client(self.endpoint, self.access_key, self.secret_key)
        deadline = time.time() + 30
        while True:
            try:
                self.client.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail(f"versitygw did not start: {(self.dir / 'versitygw.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def keys(self, bucket, prefix=""):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def empty(self, bucket):
        for key in self.keys(bucket):
            self.client.delete_object(Bucket=bucket, Key=key)

    def stop(self):
        stop_server(self, signal.SIGTERM)


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_store():
    server = S3Store()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def databases(postgres):
    """Fresh dify and dify_plugin databases with rows to find again after a restore."""
    for db in ("dify", "dify_plugin"):
        postgres.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        postgres.psql("postgres", f"CREATE DATABASE {db}")
    postgres.psql("dify", "CREATE TABLE apps (id int PRIMARY KEY, name text); "
                          "INSERT INTO apps SELECT i, 'app ' || i FROM generate_series(1, 500) AS i")
    postgres.psql("dify_plugin", "CREATE TABLE plugins (id text PRIMARY KEY); INSERT INTO plugins VALUES ('openai')")
    return postgres

