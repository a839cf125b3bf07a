"""Engine, schema migrations and connections.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing with
"database is locked". Reads and writes are plain SQL on ``sqlite3`` connections: no ORM is
imported. Any other database URL (PostgreSQL 15+) goes through SQLAlchemy Core for both, and
a write transaction takes one transaction-scoped advisory lock first: writers from every
process on every machine queue as they do on SQLite, so "find by hash, else insert" keeps one
row per content. Migrations go through Alembic on both. A database that cannot be reached is
one :class:`RegistryError` naming it (password masked); a transaction cut by the server going
away is rolled back by the server, so nothing is half-written.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.config import masked_url
from hub.core.errors import RegistryError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

HEAD_REVISION = "0007_machines"  # the newest migration in migrations/versions (tested)
BUSY_TIMEOUT_S = 60
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_LOCK = 0x5D_4B_0001  # pg_advisory_xact_lock key every write transaction takes
MIGRATION_LOCK = 0x5D_4B_0002  # ... and every migration


class Database:
    """One registry database, given by a SQLAlchemy URL."""

    def __init__(self, url: str, machine: str = "") -> None:
        self.url = url
        self.machine = machine or default_machine()  # the machine this process's paths are on
        self.sqlite_path = (
            Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        )
        self._engine: Engine | None = None
        self._ready = False

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite_path is not None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql`` (the URL's scheme without its driver)."""
        return self.url.split(":", 1)[0].split("+", 1)[0]

    @contextmanager
    def _server_errors(self) -> Iterator[None]:
        """A database server error (down, refused, cut mid-transaction) as one line."""
        if self.is_sqlite:
            yield
            return
        from sqlalchemy.exc import DBAPIError

        try:
            yield
        except DBAPIError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc) else ""
            raise RegistryError(
                f"{masked_url(self.url)}: {reason or type(exc).__name__}",
                hint="is the database server running and reachable?",
            ) from None

    # -- schema ------------------------------------------------------------------------------

    def _current_revision(self) -> str | None:
        if self.sqlite_path is not None:
            if not self.sqlite_path.exists():
                return None
            with self._sqlite() as con:
                try:
                    row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                except sqlite3.OperationalError:
                    return None
                return row[0] if row else None
        from sqlalchemy import inspect, text

        with self._server_errors(), self.engine.connect() as con:
            if not inspect(con).has_table("alembic_version"):
                return None
            return con.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def ensure_schema(self) -> None:
        """Create or migrate the schema to the newest revision (backing up a database first)."""
        if self._ready:
            return
        current = self._current_revision()
        if current != HEAD_REVISION:
            with self._server_errors():
                self._migrate(current)
        self._ready = True

    def _migrate(self, current: str | None) -> None:
        from alembic import command
        from alembic.config import Config

        backup = None
        if current is not None and self.sqlite_path is not None:
            backup = self.sqlite_path.with_name(
                f"{self.sqlite_path.name}.bak-{current}-{int(time.time())}"
            )
            with self._sqlite() as src, sqlite3.connect(backup) as dst:
                src.backup(dst)
        elif self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as con:
                if self.dialect == "postgresql":  # one process migrates, the others wait
                    from sqlalchemy import text

                    con.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                cfg.attributes["connection"] = con
                cfg.attributes["machine"] = self.machine
                command.upgrade(cfg, "head")
        except Exception as exc:
            where = f"; the database before migrating is at {backup}" if backup else ""
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RegistryError(
                f"{masked_url(self.url)}: migration from {current} failed: {reason}{where}"
            ) from exc

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _sqlite(self, readonly: bool = False) -> Iterator[sqlite3.Connection]:
        assert self.sqlite_path is not None
        uri = f"file:{self.sqlite_path}" + ("?mode=ro" if readonly else "")
        con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            yield con
        finally:
            con.close()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _make_engine(self.url, self.is_sqlite)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Writer]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        self.ensure_schema()
        if self.sqlite_path is None:
            from sqlalchemy import text

            with self._server_errors(), self.engine.begin() as con:
                if self.dialect == "postgresql":
                    con.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                yield Writer(con, native=False, db=self)
            return
        with self._sqlite() as con:
            con.isolation_level = None  # transactions are begun and ended here
            con.execute("PRAGMA foreign_keys = ON")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(con, native=True, db=self)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """A read connection for plain SQL with ``:name`` parameters."""
        self.ensure_schema()
        if self.sqlite_path is not None:
            with self._sqlite(readonly=True) as con:
                yield Reader(con, native=True, db=self)
        else:
            with self._server_errors(), self.engine.connect() as con:
                yield Reader(con, native=False, db=self)

    def write(self, sql: str, params: dict[str, Any]) -> None:
        """One plain-SQL write in its own transaction, without the ORM."""
        self.ensure_schema()
        if self.sqlite_path is not None:
            with self._sqlite() as con, con:
                con.execute(sql, params)
            return
        with self.session() as writer:
            writer.execute(sql, params)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def default_machine() -> str:
    """The name locations are recorded under when hub.toml names no ``machine``: the host's
    (``uname``'s node name, as ``socket.gethostname`` gives it, without importing socket)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


class Reader:
    """Runs read-only SQL and returns rows as dicts, on sqlite3 or on SQLAlchemy."""

    def __init__(self, con: Any, native: bool, db: Database | None = None) -> None:
        self._con = con
        self._native = native
        self.db = db  # where a query that must store what it computed writes

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: which full-text index and JSON functions apply."""
        return "sqlite" if self._native or self.db is None else self.db.dialect

    @property
    def machine(self) -> str:
        """The machine whose locations are this process's files."""
        return self.db.machine if self.db is not None else default_machine()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query; ``:machine`` in it is this machine's name unless given."""
        if ":machine" in sql:
            params = {"machine": self.machine, **(params or {})}
        if self._native:
            cursor = self._con.execute(sql, params or {})
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        from sqlalchemy import text

        return [dict(r) for r in self._con.execute(text(sql), params or {}).mappings()]


class Writer(Reader):
    """A write transaction: :meth:`rows` and :meth:`execute` of plain SQL."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Run one statement; returns how many rows it changed (``:machine`` as in rows)."""
        if ":machine" in sql:
            params = {"machine": self.machine, **(params or {})}
        if self._native:
            return self._con.execute(sql, params or {}).rowcount
        from sqlalchemy import text

        return self._con.execute(text(sql), params or {}).rowcount


def _make_engine(url: str, is_sqlite: bool) -> Engine:
    from sqlalchemy import create_engine, event

    if not is_sqlite:
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_con: sqlite3.Connection, _record: Any) -> None:
        dbapi_con.isolation_level = None  # we issue BEGIN ourselves
        dbapi_con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        dbapi_con.execute("PRAGMA journal_mode = WAL")
        dbapi_con.execute("PRAGMA synchronous = NORMAL")
        dbapi_con.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(con: Any) -> None:
        con.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
