"""Shared fixtures: real servers started by the test run itself.

* ``s3_server`` / ``s3_bucket`` - a local S3 server (moto) on 127.0.0.1 and a fresh bucket.
* ``postgres_url`` / ``postgres_db_url`` - a real PostgreSQL server and a fresh database.

Recipes: /work/shared/recipes/s3.md and postgres.md. Third-party modules are imported inside
the fixtures, so collecting the suite does not import boto3, moto or SQLAlchemy (tests that
check what ``import lakehouse`` pulls in stay honest).

Nothing here skips or xfails a test because a lakehouse feature is missing. The only skip is
for a machine without PostgreSQL binaries outside CI; under CI (env ``CI`` set) that fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

AWS_REGION = "us-east-1"
AWS_KEY = "testing"
AWS_SECRET = "testing"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server on 127.0.0.1."""

    endpoint: str
    storage_options: dict[str, str] = field(repr=False)

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=AWS_REGION,
            aws_access_key_id=AWS_KEY,
            aws_secret_access_key=AWS_SECRET,
        )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh, empty bucket on the local S3 server."""

    name: str
    uri: str  # s3://<name>/wh - a warehouse root inside the bucket
    storage_options: dict[str, str] = field(repr=False)
    endpoint: str


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server in its own process on a free port of 127.0.0.1.

    A separate process, not a thread of the test process: some deltalake calls hold the
    GIL while they wait on the server (``DeltaTable.history()``), which would deadlock
    against a server thread in the same interpreter.
    """
    import sys
    import time
    import urllib.request

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the moto S3 server did not start on {endpoint}") from None
                time.sleep(0.1)
        storage_options = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": AWS_REGION,
            "AWS_ACCESS_KEY_ID": AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        }
        yield S3Server(endpoint=endpoint, storage_options=storage_options)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A new bucket with a unique name for each test module."""
    name = f"lakehouse-test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return S3Bucket(
        name=name,
        uri=f"s3://{name}/wh",
        storage_options=dict(s3_server.storage_options),
        endpoint=s3_server.endpoint,
    )


# -------------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()]

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.parent.name.split(".") if x.isdigit())

    return max(candidates, key=version) if candidates else None


def _no_postgres(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so PostgreSQL tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


class _LocalPostgres:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Not pytest's tmp_path_factory: /tmp/pytest-of-root is 0700 and the postgres user
        # cannot enter it.
        self.root = Path(tempfile.mkdtemp(prefix="lakehouse-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited with {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n{self._server_log()}"
            )
        return proc

    def _server_log(self) -> str:
        try:
            return "server log:\n" + self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        last_error: Exception | None = None
        for _ in range(3):  # the free port can be taken between bind and listen: retry
            self.port = _free_port()
            options = (
                f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            proc = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                "-o", options, "start",
                check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                self.started = True
                return
            last_error = RuntimeError(
                f"pg_ctl start failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                f"{self._server_log()}"
            )
        assert last_error is not None
        raise last_error

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          check=False)  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _admin_engine(url: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _create_database(admin_url: str, name: str) -> str:
    """CREATE DATABASE ``name`` on the server of ``admin_url``; return the new database's URL."""
    import sqlalchemy as sa

    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database for the whole session.

    ``LAKEHOUSE_TEST_POSTGRES_URL`` if set (CI started the server, see .ci/run); otherwise a
    server started here from Debian's PostgreSQL binaries and stopped at session end.
    """
    env_url = os.environ.get("LAKEHOUSE_TEST_POSTGRES_URL")
    if env_url:
        yield env_url
        return

    bindir = _pg_bindir()
    if bindir is None:
        _no_postgres(
            "PostgreSQL binaries not found (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin): "
            "apt-get install postgresql, or set LAKEHOUSE_TEST_POSTGRES_URL"
        )
    assert bindir is not None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _no_postgres("running as root but there is no 'postgres' user to run PostgreSQL as")

    server = _LocalPostgres(bindir)
    try:
        server.start()
        yield _create_database(server.url("postgres"), "lakehouse_test")
    finally:
        server.stop()


@pytest.fixture
def postgres_db_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database for one test (dropped afterwards), so tests share no state."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = _create_database(postgres_url, name)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            _drop_database(postgres_url, name)


@pytest.fixture(autouse=True)
def _isolated_registry():
    """Each test sees and leaves the process-wide asset registry as it found it."""
    from lakehouse.assets import REGISTRY

    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)
