"""``hub scan``: register the model files under a folder in place, header first, hashes after.

Two passes. The first reads each new or changed file's header and sidecars only and
registers it at once (listed and searchable, ``hash_status`` pending); the second hashes the
pending files on a pool of threads (hashlib and xxhash release the GIL) and writes the
results in batches, in the order the files were found. A file whose bytes turn out to be those
of a registered artifact becomes one more location of that artifact.

Every batch is one short write transaction, so a scan stopped at any point (Ctrl-C, SIGKILL,
a full disk) leaves whole rows: the next scan finds the registered files unchanged (a
``stat``, nothing else) and hashes only what is still pending. Real paths are resolved; a
second link to a file seen in the same scan is a location of the same artifact, not read
again; loops and files that vanish mid-scan are reported and skipped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import stat as statmod
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError, InvalidFileError, RegistryError
from hub.core.hashing import FileHashes, FileStat, hash_folder, hash_small_file
from hub.core.sidecars import Sidecars, read_sidecars, sidecar_names
from hub.register import (
    Overrides,
    artifact_values,
    autov3_in_pass,
    identify_path,
    tag_list,
)
from hub.registry import writes
from hub.registry.db import Writer
from hub.registry.queries import PENDING, location_index
from hub.registry.store import STAGING

MODEL_SUFFIXES = {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin"}
BATCH_FILES = 500  # a write transaction holds at most this many files ...
BATCH_SECONDS = 1.0  # ... or what arrived within this time
HASH_WINDOW = 64  # files being hashed or waiting to be written, at most
PARALLEL_READS = 256  # from this many new files on, headers are read on every core ...
READ_CHUNK = 64  # ... this many per task


@dataclass
class ScanReport:
    """What a scan did; ``pending``: files registered whose hashes are still to come."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    locations_added: list[tuple[str, str]] = field(default_factory=list)  # (path, primary)
    hashed_files: int = 0
    hashed_bytes: int = 0
    pending: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "locations_added": [{"path": p, "artifact": o} for p, o in self.locations_added],
            "hashed_files": self.hashed_files,
            "hashed_bytes": self.hashed_bytes,
            "pending": self.pending,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "counts": {
                "new": len(self.added),
                "updated": len(self.updated),
                "unchanged": self.unchanged,
                "locations_added": len(self.locations_added),
                "hashed_bytes": self.hashed_bytes,
                "pending": self.pending,
                "skipped": len(self.skipped),
            },
        }


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan is: ``stage`` is "headers" (totals unknown: None) or "hashing"."""

    stage: str
    files_done: int
    files_total: int | None
    bytes_done: int
    bytes_total: int | None


@dataclass
class _Found:
    """A file (or diffusers folder) met by the walk."""

    path: str
    st: os.stat_result
    order: int = 0  # its place in the walk: files are hashed and settled in this order
    artifact_id: int | None = None  # its row, once registered
    autov3: bool = False


def walk_models(
    root: Path, report: ScanReport
) -> Iterator[tuple[str, os.stat_result, frozenset[str] | None]]:
    """(real path, stat, the names in its folder) of the model files and diffusers folders
    under ``root``, following symlinks without loops (names None when the path was reached
    through a link); a dangling or vanished entry is reported and skipped."""
    seen_dirs: set[tuple[int, int]] = set()
    stack = [os.path.realpath(root)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            report.skipped.append((folder, f"cannot open folder: {exc.strerror}"))
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            report.skipped.append((folder, "folder already visited (symlink loop)"))
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        if os.path.isfile(os.path.join(folder, "model_index.json")):
            yield folder, st, None
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            report.skipped.append((folder, f"cannot list folder: {exc.strerror}"))
            continue
        subdirs = []
        names = frozenset(e.name for e in entries)
        for entry in entries:
            if entry.name.startswith(".") or entry.name == STAGING:
                continue
            linked = entry.is_symlink()
            real = os.path.realpath(entry.path) if linked else entry.path
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                subdirs.append(real)
            elif os.path.splitext(entry.name)[1].lower() in MODEL_SUFFIXES:
                try:
                    yield real, os.stat(real), None if linked else names
                except OSError:
                    report.skipped.append((entry.path, "vanished or dangling link"))
        stack.extend(reversed(subdirs))


class _Batches:
    """Write transactions of at most ``BATCH_FILES`` items or ``BATCH_SECONDS`` each."""

    def __init__(self, ctx: Context, write: Callable[[Writer, list[Any]], None]) -> None:
        self._ctx, self._write = ctx, write
        self._items: list[Any] = []
        self._since = time.monotonic()

    def add(self, item: Any) -> None:
        self._items.append(item)
        if len(self._items) >= BATCH_FILES or time.monotonic() - self._since > BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write what has arrived, in one transaction (a full disk: nothing of it, and the
        next scan continues from the last batch that was written)."""
        if self._items:
            try:
                with self._ctx.db.session() as session:
                    self._write(session, self._items)
            except sqlite3.OperationalError as exc:
                raise RegistryError(
                    f"{self._ctx.db.url}: cannot write the scan's results ({exc})",
                    hint="free some space; `hub scan` again continues where this one stopped",
                ) from None
        self._items = []
        self._since = time.monotonic()


class _Scan:
    """One scan of one root: the header pass, then the hash pass."""

    def __init__(
        self, ctx: Context, root: Path, progress: Callable[[ScanProgress], None] | None
    ) -> None:
        self.ctx, self.root = ctx, str(root)
        self.report = ScanReport()
        self.progress = progress or (lambda p: None)
        self.to_hash: list[_Found] = []
        self.aliases: list[tuple[_Found, str]] = []  # (second link, the path seen first)
        with ctx.db.reader() as reader:
            self.index = location_index(reader)

    # -- pass 1: headers -----------------------------------------------------------------------

    def headers(self) -> None:
        seen: dict[tuple[int, int], str] = {}  # (device, inode) -> the path met first
        todo: list[tuple[_Found, bool]] = []  # files to read, and whether a sidecar is there
        for order, (path, st, names) in enumerate(walk_models(Path(self.root), self.report)):
            found = self._meet(path, st, order, seen)
            if found is not None:
                beside = names is None or not names.isdisjoint(sidecar_names(Path(path)))
                todo.append((found, beside))
        batches = _Batches(self.ctx, self._write_headers)
        with _flush_on_interrupt(batches):
            for done, ((found, _), result) in enumerate(_read_all(self.ctx, todo), start=1):
                if isinstance(result, str):
                    self.report.skipped.append((found.path, result))
                else:
                    found.autov3 = autov3_in_pass(result[0].best.kind)
                    batches.add((found, *result))
                self.progress(ScanProgress("headers", done, len(todo), 0, None))
        batches.flush()

    def _meet(
        self, path: str, st: os.stat_result, order: int, seen: dict[tuple[int, int], str]
    ) -> _Found | None:
        """One file met by the walk: unchanged (a stat), a second link, or one to read."""
        known = self.index.get(path)
        is_dir = statmod.S_ISDIR(st.st_mode)
        if known is not None and not is_dir and known[:3] == _stat_key(st):
            self.report.unchanged += 1
            seen.setdefault((st.st_dev, st.st_ino), path)
            if known[4] == PENDING:
                self.to_hash.append(_Found(path, st, order, known[3], autov3_in_pass(known[5])))
            return None
        first = seen.get((st.st_dev, st.st_ino))
        if first is not None:
            self.aliases.append((_Found(path, st, order), first))
            return None
        seen[(st.st_dev, st.st_ino)] = path
        if not (statmod.S_ISREG(st.st_mode) or is_dir):
            self.report.skipped.append((path, "not a regular file"))
            return None
        return _Found(path, st, order)

    def _write_headers(self, session: Writer, items: list[tuple[_Found, Any, Any]]) -> None:
        for found, ident, sidecars in items:
            place = writes.Place.of(found.path, found.st)
            placeholder = FileHashes(xxh3_128=f"{PENDING}:{found.path}", sha256="")
            fstat = FileStat.of(found.st)
            known = self.index.get(found.path)
            row = writes.get(session, known[3]) if known else None
            if row is not None and writes.location_paths(session, row.id) == [found.path]:
                locked = Overrides(
                    kind=row.kind if row.kind_locked else None,
                    base=row.base if row.base_locked else None,
                    name=row.name,
                )
                values = artifact_values(
                    Path(found.path), ident, placeholder, fstat, locked, sidecars
                )
                values.pop("created_at", None)
                values["hash_status"] = PENDING
                writes.update(session, row, values)
                writes.put_location(session, row.id, place, root=self.root)
                found.artifact_id = row.id
                self.report.updated.append(found.path)
            else:
                if row is not None:  # a changed copy: no longer that artifact's bytes
                    writes.drop_location(session, row, found.path)
                values = artifact_values(
                    Path(found.path), ident, placeholder, fstat, Overrides(), sidecars
                )
                values["hash_status"] = PENDING
                new = writes.insert(
                    session, values, tag_list(Overrides(), sidecars), place, self.root
                )
                found.artifact_id = new.id
                self.report.added.append(found.path)
            self.to_hash.append(found)

    # -- pass 2: hashes ------------------------------------------------------------------------

    def hashes(self) -> None:
        total = sum(f.st.st_size for f in self.to_hash)
        files = len(self.to_hash)
        batches = _Batches(self.ctx, self._write_hashes)
        self.progress(ScanProgress("hashing", 0, files, 0, total))
        self.to_hash.sort(key=lambda f: f.order)
        with _flush_on_interrupt(batches):
            self._hash_all(batches, files, total)
        batches.flush()
        if self.aliases:
            with self.ctx.db.session() as session:
                self._write_aliases(session)

    def _hash_all(self, batches: _Batches, files: int, total: int) -> None:
        done = 0
        for found, result in _hash_in_order(self.to_hash):
            done += 1
            if isinstance(result, BaseException):
                reason = (
                    "vanished during the scan"
                    if isinstance(result, FileNotFoundError)
                    else (getattr(result, "reason", None) or str(result))
                )
                self.report.skipped.append((found.path, reason))
                self.report.pending += 1
                continue
            self.report.hashed_files += 1
            self.report.hashed_bytes += result[1].size
            batches.add((found, *result))
            self.progress(ScanProgress("hashing", done, files, self.report.hashed_bytes, total))

    def _write_hashes(
        self, session: Writer, items: list[tuple[_Found, FileHashes, FileStat]]
    ) -> None:
        for found, hashes, fstat in items:
            loc = session.rows(
                "SELECT artifact_id, size, mtime_ns, inode FROM location "
                "WHERE machine = :machine AND path = :p",
                {"p": found.path},
            )
            if not loc or loc[0]["artifact_id"] != found.artifact_id:
                continue  # another scan settled this path meanwhile
            if (loc[0]["size"], loc[0]["mtime_ns"], loc[0]["inode"]) != (
                fstat.size,
                fstat.mtime_ns,
                fstat.inode,
            ):
                self.report.skipped.append((found.path, "changed while it was scanned"))
                self.report.pending += 1
                continue
            row = writes.get(session, found.artifact_id)
            same = writes.find_by_hash(session, hashes.xxh3_128)
            if same is not None and same.id != row.id:
                self._merge(session, row, same, found.path)
                continue
            writes.update(session, row, _hash_values(hashes), search=False)

    def _merge(self, session: Writer, pending: writes.Row, same: writes.Row, path: str) -> None:
        """``path`` holds the bytes of ``same``: one more location of it (or its only one,
        when its recorded file is gone)."""
        writes.merge_into(session, pending, same)
        if not os.path.exists(same.path):
            old = same.path
            writes.update(session, same, {"path": path, "in_store": False})
            writes.drop_location(session, same, old)
        if path in self.report.added:
            self.report.added.remove(path)
        elif path in self.report.updated:
            self.report.updated.remove(path)
        self.report.locations_added.append((path, same.path))

    def _write_aliases(self, session: Writer) -> None:
        """Second links met in this scan: locations of the artifact of the path met first."""
        for alias, first in self.aliases:
            rows = session.rows("SELECT artifact_id FROM location WHERE path = :p", {"p": first})
            if not rows:
                continue
            old = self.index.get(alias.path)
            if old is not None and old[3] != rows[0]["artifact_id"]:
                row = writes.get(session, old[3])
                if not writes.drop_location(session, row, alias.path):
                    writes.remove(session, row)
            writes.put_location(
                session, rows[0]["artifact_id"], writes.Place.of(alias.path, alias.st), self.root
            )
            if old is None:
                art = writes.get(session, rows[0]["artifact_id"])
                self.report.locations_added.append((alias.path, art.path))


@contextmanager
def _flush_on_interrupt(batches: _Batches) -> Iterator[None]:
    """On Ctrl-C, write what is done before stopping: a rerun never repeats it."""
    try:
        yield
    except KeyboardInterrupt:
        batches.flush()
        raise


_WORKER_CONTEXT: Context | None = None  # what a forked header reader identifies with


def _read_one(ctx: Context, path: str, sidecars_beside: bool) -> tuple[Any, Sidecars] | str:
    """A file's identification (from its header) and sidecars, or why it is skipped."""
    try:
        ident = identify_path(ctx, Path(path))
    except HubError as exc:
        return str(getattr(exc, "reason", None) or exc.message)
    except FileNotFoundError:
        return "vanished during the scan"
    return ident, read_sidecars(Path(path)) if sidecars_beside else Sidecars()


def _read_chunk(chunk: list[tuple[str, bool]]) -> list[tuple[Any, Sidecars] | str]:
    assert _WORKER_CONTEXT is not None
    return [_read_one(_WORKER_CONTEXT, path, beside) for path, beside in chunk]


def _read_all(
    ctx: Context, todo: list[tuple[_Found, bool]]
) -> Iterator[tuple[tuple[_Found, bool], tuple[Any, Sidecars] | str]]:
    """Read the headers of ``todo`` in order: in this process for a few files, else on one
    forked process per core (identification is Python, which threads would serialise),
    ``READ_CHUNK`` files per task."""
    cores = os.cpu_count() or 1
    if len(todo) < PARALLEL_READS or cores < 2 or "fork" not in mp.get_all_start_methods():
        for item in todo:
            yield item, _read_one(ctx, item[0].path, item[1])
        return
    global _WORKER_CONTEXT
    ctx.probes  # noqa: B018 -- loaded once here, inherited by the forked readers
    _WORKER_CONTEXT = ctx
    chunks = [todo[i : i + READ_CHUNK] for i in range(0, len(todo), READ_CHUNK)]
    window: deque[tuple[list[tuple[_Found, bool]], Future[list]]] = deque()
    pool = ProcessPoolExecutor(max_workers=cores, mp_context=mp.get_context("fork"))
    try:
        for chunk in chunks:
            args = [(found.path, beside) for found, beside in chunk]
            window.append((chunk, pool.submit(_read_chunk, args)))
            if len(window) > 2 * cores:
                yield from _chunk_results(*window.popleft())
        while window:
            yield from _chunk_results(*window.popleft())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _WORKER_CONTEXT = None
    pool.shutdown()


def _chunk_results(
    chunk: list[tuple[_Found, bool]], fut: Future[list]
) -> Iterator[tuple[tuple[_Found, bool], tuple[Any, Sidecars] | str]]:
    yield from zip(chunk, fut.result(), strict=True)


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def _hash_values(hashes: FileHashes) -> dict[str, Any]:
    return {
        "xxh3_128": hashes.xxh3_128,
        "sha256": hashes.sha256,
        "autov1": hashes.autov1,
        "autov3": hashes.autov3,
        "hash_status": "ok",
    }


def _hash_one(found: _Found) -> tuple[FileHashes, FileStat]:
    if statmod.S_ISDIR(found.st.st_mode):
        return hash_folder(found.path)
    return hash_small_file(found.path, autov3=found.autov3)


def _hash_in_order(
    items: Iterable[_Found],
) -> Iterator[tuple[_Found, tuple[FileHashes, FileStat] | BaseException]]:
    """Hash files on every core, yielding results in the order given (so which copy of
    a file is met first never depends on thread timing)."""
    window: deque[tuple[_Found, Future[tuple[FileHashes, FileStat]]]] = deque()
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="hub-scan")
    try:
        for found in items:
            window.append((found, pool.submit(_hash_one, found)))
            if len(window) >= HASH_WINDOW:
                yield _result(*window.popleft())
        while window:
            yield _result(*window.popleft())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _result(
    found: _Found, fut: Future[tuple[FileHashes, FileStat]]
) -> tuple[_Found, tuple[FileHashes, FileStat] | BaseException]:
    try:
        return found, fut.result()
    except (OSError, HubError) as exc:
        return found, exc


def scan(
    ctx: Context, root: Path, progress: Callable[[ScanProgress], None] | None = None
) -> ScanReport:
    """Register every model under ``root`` in place: headers first (listed at once, hashes
    pending), then hashes on every core; only new, changed or still-pending files are read."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidFileError(root, "not a folder")
    job = _Scan(ctx, root, progress)
    job.headers()
    job.hashes()
    report = job.report
    from hub.families import settle, unsettled

    if report.added or report.updated or report.hashed_files or unsettled(ctx.db):
        # families (and add-ons trained on what was added) from the evidence; also after a
        # scan that was stopped before it got here
        settle(ctx.db)
    return report
