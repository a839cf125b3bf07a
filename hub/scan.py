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
from hub.core.hashing import SMALL_FILE, FileHashes, FileStat, hash_folder, hash_small_file
from hub.core.sidecars import Sidecars, read_sidecars, sidecar_names
from hub.core.taxonomy import is_tokenizer_folder
from hub.families import (
    CHECKPOINT_KINDS,
    TrainingBases,
    decide,
    settle,
    tables,
    training_bases,
    unsettled,
)
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
    kind: str | None = None
    hashed: _Hashed | None = None  # hashed by the reader of its header (small files)


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
        if is_tokenizer_folder(names):  # a tokenizer part (ComfyUI's comfy/t5_tokenizer)
            yield folder, st, None
            continue
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
        self.merged: set[str] = set()  # paths found to hold a registered artifact's bytes
        self.hashed_checkpoints: set[int] = set()  # their hash is evidence of their family
        with ctx.db.reader() as reader:
            self.index = location_index(reader)
            self.bases = training_bases(reader)

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
            reading = _read_all(self.ctx, self.bases, todo)
            for done, ((found, _), result) in enumerate(reading, start=1):
                if isinstance(result, str):
                    self.report.skipped.append((found.path, result))
                else:
                    values, tags, found.hashed = result
                    found.kind = values["kind"]
                    found.autov3 = autov3_in_pass(found.kind)
                    batches.add((found, values, tags))
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
                pending = _Found(path, st, order, known[3], autov3_in_pass(known[5]), known[5])
                self.to_hash.append(pending)
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

    def _write_headers(
        self, session: Writer, items: list[tuple[_Found, dict[str, Any], list[tuple[str, str]]]]
    ) -> None:
        fresh = []  # files no registry row knows: inserted together
        for found, values, tags in items:
            known = self.index.get(found.path)
            new = (values, tags, writes.Place.of(found.path, found.st))
            if known is None:
                fresh.append((found, new))
            else:
                self._write_changed(session, found, known[3], *new)
            self.to_hash.append(found)
        ids = writes.insert_many(session, [new for _, new in fresh], self.root)
        for (found, _), artifact_id in zip(fresh, ids, strict=True):
            found.artifact_id = artifact_id
            self.report.added.append(found.path)

    def _write_changed(
        self,
        session: Writer,
        found: _Found,
        artifact_id: int,
        values: dict[str, Any],
        tags: list[tuple[str, str]],
        place: writes.Place,
    ) -> None:
        """A registered path whose file changed: its row anew (the user's locked kind and
        base kept) when it is the artifact's only location, else a new artifact."""
        row = writes.get(session, artifact_id)
        if writes.location_paths(session, row.id) == [found.path]:
            values.pop("created_at", None)
            if row.family_locked:  # the user's family stays ...
                del values["family"], values["family_evidence"]
            else:  # ... any other is decided again once the scan is done
                values["family"] = None
            values["name"] = row.name
            if row.kind_locked:
                values["kind"] = row.kind
            if row.base_locked:
                values["base"] = row.base
            values["kind_locked"], values["base_locked"] = row.kind_locked, row.base_locked
            writes.update(session, row, values)
            writes.put_location(session, row.id, place, root=self.root)
            found.artifact_id = row.id
            self.report.updated.append(found.path)
            return
        writes.drop_location(session, row, found.path)  # a changed copy: no longer those bytes
        new = writes.insert(session, values, tags, place, self.root)
        found.artifact_id = new.id
        self.report.added.append(found.path)

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
        if self.merged:
            self.report.added = [p for p in self.report.added if p not in self.merged]
            self.report.updated = [p for p in self.report.updated if p not in self.merged]
        if self.aliases:
            with self.ctx.db.session() as session:
                self._write_aliases(session)

    def _hash_all(self, batches: _Batches, files: int, total: int) -> None:
        done = 0
        for found, result in _hash_in_order(self.to_hash):
            done += 1
            if isinstance(result, str):
                self.report.skipped.append((found.path, result))
                self.report.pending += 1
                continue
            self.report.hashed_files += 1
            self.report.hashed_bytes += result[1].size
            batches.add((found, *result))
            self.progress(ScanProgress("hashing", done, files, self.report.hashed_bytes, total))

    def _write_hashes(
        self, session: Writer, items: list[tuple[_Found, FileHashes, FileStat]]
    ) -> None:
        places = _by_key(
            session,
            "SELECT path, artifact_id, size, mtime_ns, inode FROM location "
            "WHERE machine = :machine AND path IN",
            [found.path for found, _, _ in items],
        )
        owners = {
            key: row["id"]
            for key, row in _by_key(
                session,
                "SELECT xxh3_128, id FROM artifact WHERE xxh3_128 IN",
                [hashes.xxh3_128 for _, hashes, _ in items],
            ).items()
        }
        now = writes.utcnow(session)
        settled: list[dict[str, Any]] = []
        for found, hashes, fstat in items:
            loc = places.get(found.path)
            if loc is None or loc["artifact_id"] != found.artifact_id:
                continue  # another scan settled this path meanwhile
            # a folder's recorded size is its directory entry's; hashing totals its files
            folder = statmod.S_ISDIR(found.st.st_mode)
            recorded = (loc["size"], loc["mtime_ns"], loc["inode"])
            if recorded[folder:] != (fstat.size, fstat.mtime_ns, fstat.inode)[folder:]:
                self.report.skipped.append((found.path, "changed while it was scanned"))
                self.report.pending += 1
                continue
            same = owners.get(hashes.xxh3_128)
            if same is not None and same != found.artifact_id:
                session.execute_many(_SET_HASHES, settled)  # the survivor's row as it is now
                settled = []
                self._merge(
                    session,
                    writes.get(session, found.artifact_id),
                    writes.get(session, same),
                    found.path,
                )
                continue
            owners[hashes.xxh3_128] = found.artifact_id
            if found.kind in CHECKPOINT_KINDS:
                self.hashed_checkpoints.add(found.artifact_id)
            sized = {"size": fstat.size if folder else None}
            settled.append(
                _hash_values(hashes) | sized | {"updated_at": now, "id_": found.artifact_id}
            )
        session.execute_many(_SET_HASHES, settled)

    def _merge(self, session: Writer, pending: writes.Row, same: writes.Row, path: str) -> None:
        """``path`` holds the bytes of ``same``: one more location of it (or its only one,
        when its recorded file is gone)."""
        writes.merge_into(session, pending, same)
        if not os.path.exists(same.path):
            old = same.path
            writes.update(session, same, {"path": path, "in_store": False})
            writes.drop_location(session, same, old)
        self.merged.add(path)
        self.report.locations_added.append((path, same.path))

    def _write_aliases(self, session: Writer) -> None:
        """Second links met in this scan: locations of the artifact of the path met first."""
        for alias, first in self.aliases:
            rows = session.rows(
                "SELECT artifact_id FROM location WHERE machine = :machine AND path = :p",
                {"p": first},
            )
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


_WORKER: tuple[Context, TrainingBases] | None = None  # what a forked header reader uses


_Hashed = tuple[FileHashes, FileStat] | str  # a file's hashes, or why it has none
_Header = tuple[dict[str, Any], list[tuple[str, str]], _Hashed | None]  # row, tags, hashes


def _read_one(
    ctx: Context,
    bases: TrainingBases,
    path: str,
    fstat: FileStat,
    sidecars_beside: bool,
    small: bool,
) -> _Header | str:
    """A file's row (from its header and sidecars, hashes pending; the family decided from
    ``bases`` unless the file is a checkpoint, whose hash is evidence), tags and, for a
    ``small`` one, its hashes (read while its pages are warm, written after every header), or
    why it is skipped: computed where the header is read, so a forked reader hands back plain
    values."""
    try:
        ident = identify_path(ctx, file := Path(path))
    except HubError as exc:
        return str(getattr(exc, "reason", None) or exc.message)
    except FileNotFoundError:
        return "vanished during the scan"
    sidecars = read_sidecars(file) if sidecars_beside else Sidecars()
    placeholder = FileHashes(xxh3_128=f"{PENDING}:{path}", sha256="")
    values = artifact_values(file, ident, placeholder, fstat, Overrides(), sidecars)
    values["hash_status"] = PENDING
    values["family"] = values["family_evidence"] = None
    if values["kind"] not in CHECKPOINT_KINDS:
        row = values | {"family_locked": False}
        values["family"], values["family_evidence"] = decide(row, bases, ident.metadata)
    hashed = _hash_one(path, autov3_in_pass(values["kind"])) if small else None
    return values, tag_list(Overrides(), sidecars), hashed


def _read_chunk(chunk: list[tuple[str, FileStat, bool, bool]]) -> list[_Header | str]:
    assert _WORKER is not None
    return [_read_one(*_WORKER, *args) for args in chunk]


def _read_all(
    ctx: Context, bases: TrainingBases, todo: list[tuple[_Found, bool]]
) -> Iterator[tuple[tuple[_Found, bool], _Header | str]]:
    """Read the headers of ``todo`` in order: in this process for a few files, else on one
    forked process per core (identification is Python, which threads would serialise),
    ``READ_CHUNK`` files per task."""
    cores = os.cpu_count() or 1
    if len(todo) < PARALLEL_READS or cores < 2 or "fork" not in mp.get_all_start_methods():
        for item in todo:
            yield item, _read_one(ctx, bases, *_read_args(*item))
        return
    global _WORKER
    ctx.probes  # noqa: B018 -- loaded once here, inherited by the forked readers
    tables()  # the same for the family tables
    _WORKER = (ctx, bases)
    chunks = [todo[i : i + READ_CHUNK] for i in range(0, len(todo), READ_CHUNK)]
    window: deque[tuple[list[tuple[_Found, bool]], Future[list]]] = deque()
    pool = ProcessPoolExecutor(max_workers=cores, mp_context=mp.get_context("fork"))
    try:
        for chunk in chunks:
            args = [_read_args(found, beside) for found, beside in chunk]
            window.append((chunk, pool.submit(_read_chunk, args)))
            if len(window) > 2 * cores:
                yield from _chunk_results(*window.popleft())
        while window:
            yield from _chunk_results(*window.popleft())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _WORKER = None
    pool.shutdown()


def _chunk_results(
    chunk: list[tuple[_Found, bool]], fut: Future[list]
) -> Iterator[tuple[tuple[_Found, bool], _Header | str]]:
    yield from zip(chunk, fut.result(), strict=True)


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


_SET_HASHES = (
    "UPDATE artifact SET xxh3_128 = :xxh3_128, sha256 = :sha256, autov1 = :autov1, "
    "autov3 = :autov3, hash_status = :hash_status, updated_at = :updated_at, "
    "size = COALESCE(:size, size) WHERE id = :id_"
)


def _by_key(session: Writer, select: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of ``select`` (a query ending in ``WHERE column IN``) for ``keys``, by the
    value of its first column."""
    params = {f"k{i}": key for i, key in enumerate(keys)}
    marks = ", ".join(f":{k}" for k in params) or "NULL"
    rows = session.rows(f"{select} ({marks})", params)
    return {next(iter(row.values())): row for row in rows}


def _hash_values(hashes: FileHashes) -> dict[str, Any]:
    return {
        "xxh3_128": hashes.xxh3_128,
        "sha256": hashes.sha256,
        "autov1": hashes.autov1,
        "autov3": hashes.autov3,
        "hash_status": "ok",
    }


def _read_args(found: _Found, sidecars_beside: bool) -> tuple[str, FileStat, bool, bool]:
    small = statmod.S_ISREG(found.st.st_mode) and found.st.st_size <= SMALL_FILE
    return found.path, FileStat.of(found.st), sidecars_beside, small


def _hash_one(path: str, autov3: bool, folder: bool = False) -> _Hashed:
    """The hashes of a file or diffusers folder, or why it has none."""
    try:
        return hash_folder(path) if folder else hash_small_file(path, autov3=autov3)
    except FileNotFoundError:
        return "vanished during the scan"
    except (OSError, HubError) as exc:
        return getattr(exc, "reason", None) or str(exc)


def _hash_in_order(items: Iterable[_Found]) -> Iterator[tuple[_Found, _Hashed]]:
    """Hash files on every core (those not hashed with their header), yielding results in
    the order given (so which copy of a file is met first never depends on thread timing)."""
    window: deque[tuple[_Found, Future[_Hashed]]] = deque()
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="hub-scan")
    try:
        for found in items:
            if found.hashed is None:
                folder = statmod.S_ISDIR(found.st.st_mode)
                fut = pool.submit(_hash_one, found.path, found.autov3, folder)
            else:
                fut = Future()
                fut.set_result(found.hashed)
            window.append((found, fut))
            if len(window) >= HASH_WINDOW:
                found, fut = window.popleft()
                yield found, fut.result()
        while window:
            found, fut = window.popleft()
            yield found, fut.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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
    ids = job.hashed_checkpoints.union(unsettled(ctx.db))
    if ids:
        # the families of checkpoints, known once hashed (and of the add-ons trained on them),
        # and of rows a scan stopped before deciding; the others were decided with their header
        settle(ctx.db, ids)
    return report
