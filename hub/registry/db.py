"""Engine, schema migrations and connections.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing with
"database is locked". Reads and writes are plain SQL on ``sqlite3`` connections: no ORM is
imported. On PostgreSQL 15+, reads of a ``postgresql+psycopg`` URL go straight to psycopg
(pooled connections, no SQLAlchemy import: a search starts fast); writes, and reads of any
other URL, go through SQLAlchemy Core, and
a write transaction takes one transaction-scoped advisory lock first: writers from every
process on every machine queue as they do on SQLite, so "find by hash, else insert" keeps one
row per content. Migrations go through Alembic on both. A database that cannot be reached is
one :class:`RegistryError` naming it (password masked); a transaction cut by the server going
away is rolled back by the server, so nothing is half-written.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
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
READ_MMAP_BYTES = 1 << 30  # a read connection maps up to this much of the database
MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_LOCK = 0x5D_4B_0001  # pg_advisory_xact_lock key every write transaction takes
MIGRATION_LOCK = 0x5D_4B_0002  # ... and every migration
MAX_IDLE = 8  # pooled PostgreSQL read connections a process keeps
PING_AFTER_S = 30.0  # a pooled connection idle this long is pinged before use
SHARED_RECHECK_S = 5.0  # how long "no other machine" is believed before it is asked again


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
        self._idle: list[tuple[Any, float]] = []  # psycopg read connections, last used at
        self._idle_lock = threading.Lock()
        self._shared: bool | None = None  # see shared()
        self._shared_at = float("-inf")

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
        if self._psycopg_url is not None:
            with self._psycopg_reader() as reader:
                if not reader.rows("SELECT to_regclass('alembic_version') AS t")[0]["t"]:
                    return None
                rows = reader.rows("SELECT version_num FROM alembic_version")
                return rows[0]["version_num"] if rows else None
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
        if readonly:  # pages read from the mapped file, not copied by a system call each
            con.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}")
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
        elif self._psycopg_url is not None:
            with self._psycopg_reader() as reader:
                yield reader
        else:
            with self._server_errors(), self.engine.connect() as con:
                yield Reader(con, native=False, db=self)

    @property
    def _psycopg_url(self) -> str | None:
        """The libpq URL of a ``postgresql+psycopg`` database (read without SQLAlchemy)."""
        scheme, sep, rest = self.url.partition("://")
        return f"postgresql://{rest}" if sep and scheme == "postgresql+psycopg" else None

    @contextmanager
    def _psycopg_reader(self) -> Iterator[Reader]:
        """A pooled psycopg connection in autocommit (reads load no SQLAlchemy): each thread
        takes an idle one or opens one, and gives it back unless it broke. One idle for a
        while is pinged first (the server may have restarted)."""
        import psycopg

        con = None
        with self._idle_lock:
            if self._idle:
                con, last = self._idle.pop()
        try:
            if con is not None and time.monotonic() - last > PING_AFTER_S:
                try:
                    con.execute("SELECT 1")
                except psycopg.Error:
                    con.close()
                    con = None
            if con is None:
                from psycopg.rows import dict_row

                con = psycopg.connect(self._psycopg_url, autocommit=True, row_factory=dict_row)
            yield _PsycopgReader(con, native=False, db=self)
        except psycopg.Error as exc:
            if con is not None:
                con.close()
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise RegistryError(
                f"{masked_url(self.url)}: {reason or type(exc).__name__}",
                hint="is the database server running and reachable?",
            ) from None
        except BaseException:
            if con is not None:
                con.close()
            raise
        if con.closed or con.broken:
            return
        with self._idle_lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append((con, time.monotonic()))
                return
        con.close()

    def write(self, sql: str, params: dict[str, Any]) -> None:
        """One plain-SQL write in its own transaction, without the ORM."""
        self.ensure_schema()
        if self.sqlite_path is not None:
            with self._sqlite() as con, con:
                con.execute(sql, params)
            return
        with self.session() as writer:
            writer.execute(sql, params)

    def shared(self, reader: Reader) -> bool:
        """Whether other machines share the registry: once they do, for good; while they do
        not, asked again after :data:`SHARED_RECHECK_S` (a long-lived ``hub serve``)."""
        if self._shared is True or time.monotonic() - self._shared_at < SHARED_RECHECK_S:
            return bool(self._shared)
        self._shared, self._shared_at = reader.shared_now(), time.monotonic()
        return self._shared

    def change_token(self) -> Any:
        """A value that changes whenever the registry may have changed (a cache made with
        one token is valid while the token is the same): the SQLite files' sizes and times;
        PostgreSQL's write-ahead log position (any write to the server moves it)."""
        if self.sqlite_path is not None:
            out = []
            for suffix in ("", "-wal"):
                try:
                    st = os.stat(f"{self.sqlite_path}{suffix}")
                    out.append((st.st_mtime_ns, st.st_size, st.st_ino))
                except OSError:
                    out.append(None)
            return tuple(out)
        with self.reader() as reader:
            return reader.rows("SELECT CAST(pg_current_wal_lsn() AS TEXT) AS lsn")[0]["lsn"]

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for con, _ in idle:
            con.close()


# An artifact's ``path`` as this machine sees it (``FROM artifact a``; a registry may be shared
# by several machines): the primary location when it is here, else the oldest one here, else
# NULL. (SQLite cannot order a correlated subquery by an outer column: two probes, the second
# only when the primary is not here.) While no other machine has a location, every primary
# path is this machine's and readers use ``a.path`` as it is (no probe per row).
LOCAL_PATH = (
    "COALESCE((SELECT l.path FROM location l WHERE l.machine = :machine AND l.path = a.path "
    "AND l.artifact_id = a.id), (SELECT l.path FROM location l WHERE l.artifact_id = a.id "
    "AND l.machine = :machine ORDER BY l.id LIMIT 1)) AS path"
)
_OTHER_MACHINES = (  # two range probes of the (machine, path) index
    "SELECT EXISTS (SELECT 1 FROM location WHERE machine > :machine) "
    "OR EXISTS (SELECT 1 FROM location WHERE machine < :machine) AS shared"
)


MACHINE_FILE = "machine"  # in the home: this machine's name, kept when the host is renamed


def machine_of_home(home: Path) -> str:
    """The machine name a home records (``HOME/machine``), written with the host's name the
    first time: locations keep their machine when the host is renamed."""
    path = home / MACHINE_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or default_machine()
    except FileNotFoundError:
        name = default_machine()
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n", encoding="utf-8")
        return name


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
        self._shared: bool | None = None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: which full-text index and JSON functions apply."""
        return "sqlite" if self._native or self.db is None else self.db.dialect

    @property
    def machine(self) -> str:
        """The machine whose locations are this process's files."""
        return self.db.machine if self.db is not None else default_machine()

    def _local(self, sql: str, params: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """``sql`` with :data:`LOCAL_PATH` as plain ``a.path`` while no other machine shares
        the registry, and ``:machine`` bound to this machine's name unless given."""
        if LOCAL_PATH in sql:
            if self._shared is None:
                self._shared = self.db.shared(self) if self.db else self.shared_now()
            if not self._shared:
                sql = sql.replace(LOCAL_PATH, "a.path AS path")
        if ":machine" in sql:
            params = {"machine": self.machine, **(params or {})}
        return sql, params or {}

    def shared_now(self) -> bool:
        """Whether another machine has locations in this registry (asked now)."""
        return bool(self._run(_OTHER_MACHINES, {"machine": self.machine})[0][0])

    def _run(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """Plain rows (tuples or dicts, as the connection gives them) of one query."""
        if self._native:
            return self._con.execute(sql, params).fetchall()
        from sqlalchemy import text

        return [tuple(r) for r in self._con.execute(text(sql), params)]

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query (see :meth:`_local` for ``:machine`` and paths)."""
        sql, params = self._local(sql, params)
        if self._native:
            cursor = self._con.execute(sql, params or {})
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        from sqlalchemy import text

        return [dict(r) for r in self._con.execute(text(sql), params or {}).mappings()]

    def values(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """The first column of every row of a query."""
        return [r[0] for r in self.tuples(sql, params)]

    def tuples(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a query as a plain tuple (no dict per row: for large reads; see
        :meth:`_local` for ``:machine`` and paths)."""
        return self._run(*self._local(sql, params))


_QUOTED_OR_NAME = re.compile(r"('(?:[^']|'')*')|(?<!:):(\w+)|%")
_PSYCOPG_SQL: dict[str, str] = {}  # SQL with :name parameters -> psycopg's %(name)s form


def psycopg_sql(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (and ``%`` doubled), quoted text kept."""
    found = _PSYCOPG_SQL.get(sql)
    if found is None:

        def swap(m: re.Match[str]) -> str:
            if m.group(1) is not None:
                return m.group(1).replace("%", "%%")
            return f"%({m.group(2)})s" if m.group(2) is not None else "%%"

        found = _PSYCOPG_SQL[sql] = _QUOTED_OR_NAME.sub(swap, sql)
    return found


class _PsycopgReader(Reader):
    """A :class:`Reader` on a psycopg connection (rows come back as dicts)."""

    def _run(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return [tuple(r.values()) for r in self._con.execute(psycopg_sql(sql), params)]

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        sql, params = self._local(sql, params)
        return self._con.execute(psycopg_sql(sql), params).fetchall()


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

    def execute_many(self, sql: str, params: list[dict[str, Any]]) -> None:
        """Run one statement once per parameter set, in one call (``executemany``)."""
        if not params:
            return
        if self._native:
            self._con.executemany(sql, params)
            return
        from sqlalchemy import text

        self._con.execute(text(sql), params)


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
