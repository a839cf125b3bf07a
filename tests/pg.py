"""A real PostgreSQL server for the tests, started the way pytest-postgresql does it: ``initdb``
into a temporary folder, ``pg_ctl start`` on a free loopback port, stopped at the end of the
session. PostgreSQL refuses to run as root, so under root (CI) the server runs as the
unprivileged ``postgres`` system user (``runuser``) in a folder that user owns.

Each test gets its own database (``CREATE DATABASE``), dropped afterwards."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "hub"
PASSWORD = "s3cret-hub-pw"
SERVER_USER = "postgres"  # the system user the server runs as when the tests run as root


def _bin(name: str) -> str | None:
    """``initdb``/``pg_ctl`` from PATH, else from Debian's versioned folder (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running server: ``url(db)`` is a SQLAlchemy URL for database ``db``."""

    folder: Path
    port: int
    pg_ctl: str
    as_user: list[str]
    _names: Iterator[int] = itertools.count()

    def url(self, database: str = "postgres", password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql+psycopg://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(sql)

    def new_database(self) -> str:
        name = f"hub_test_{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.folder / "data"), "-m", mode, "stop"],
            capture_output=True,
            check=False,
        )

    def start(self) -> None:
        """Start (or restart) the server; raises with its log when it does not come up."""
        data, log = self.folder / "data", self.folder / "server.log"
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        proc = subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w"]
            + ["start"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else proc.stderr
            raise RuntimeError(f"pg_ctl start failed: {tail}")


def start_server() -> PgServer:
    """initdb + pg_ctl start; raises ``RuntimeError`` with the reason when it cannot."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("initdb/pg_ctl not found (install Debian's `postgresql` package)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(f"running as root and no `{SERVER_USER}` system user") from None
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", SERVER_USER, "--"]
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, pwd.getpwnam(SERVER_USER).pw_uid, -1)
    proc = subprocess.run(
        [*as_user, initdb, "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}"]
        + ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed: {proc.stderr.strip()[-500:]}")
    server = PgServer(folder, _free_port(), pg_ctl, as_user)
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session; tests skip when it cannot be started."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg (pip install 'sd-hub[postgres]')")
    try:
        server = start_server()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    yield server
    server.stop("immediate")
    shutil.rmtree(server.folder, ignore_errors=True)
