"""Content hashes in one read pass: xxh3-128 (local identity), SHA-256, AutoV1 and AutoV3;
BLAKE3 on demand.

AutoV2 is the first 10 hex digits of SHA-256. AutoV3 is the SHA-256 of a safetensors file's
bytes after its ``8 + header length`` prefix: a second SHA-256 over nearly the whole file,
which web UIs and share sites use for add-ons only, so the caller decides (from the header,
which arrives first) whether the pass computes it; :func:`autov3_of` computes it later. The
hash streams run on worker threads (hashlib and xxhash release the GIL), overlapping the
caller's next read.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import xxhash

from hub.core.errors import InvalidFileError

CHUNK_SIZE = 8 << 20
AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000
AUTOV1_MIN_SIZE = 2 << 20  # Civitai computes AutoV1 only for files of 2 MiB or more
MAX_HEADER = 100_000_000


class Sink(Protocol):
    """Where hashed bytes are copied to: a binary file, or anything with its ``write``."""

    def write(self, data: Any, /) -> int: ...


@dataclass(frozen=True)
class FileHashes:
    """The hashes of one file's bytes (lower-case hex)."""

    xxh3_128: str
    sha256: str
    autov1: str | None = None
    autov3: str | None = None

    @property
    def autov2(self) -> str:
        return self.sha256[:10]

    def as_dict(self) -> dict[str, str | None]:
        return {
            "xxh3_128": self.xxh3_128,
            "sha256": self.sha256,
            "autov1": self.autov1,
            "autov2": self.autov2,
            "autov3": self.autov3,
        }


@dataclass(frozen=True)
class FileStat:
    """What tells an unchanged file: size, modification time (ns) and inode."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


class Hasher:
    """Incremental hasher: feed the bytes of a file in order, then call :meth:`finish`.

    SHA-256, AutoV3 and the write to ``sink`` each run on their own worker thread, in order
    (hashlib releases the GIL), so ``update`` returns while they work and the caller reads
    the next chunk meanwhile; xxh3 (over ten times faster than SHA-256) runs in ``update``
    itself. Up to ``PIPELINE_BYTES`` may be in flight: a chunk may be overwritten once
    ``PIPELINE_BYTES`` more have been fed after it.

    ``autov3``: whether to compute AutoV3 in this pass, or a function that decides from the
    safetensors header (the JSON bytes) once they have all arrived.
    """

    PIPELINE_BYTES = 32 << 20

    def __init__(
        self, sink: Sink | None = None, autov3: bool | Callable[[bytes], bool] = True
    ) -> None:
        self._xxh = xxhash.xxh3_128()
        self._sha = hashlib.sha256()
        self._v3: Any = hashlib.sha256() if autov3 else None
        self._decide = autov3 if callable(autov3) else None
        self._v1 = hashlib.sha256()
        self._head = bytearray()
        self._v3_start: int | None = None  # absolute offset where AutoV3 bytes begin
        self._pos = 0
        self._sink = sink
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-hash") for _ in range(3)
        ]  # sink, sha256, autov3: one ordered lane each
        # (futures, size, chunk): the chunk is kept here so that its memory is released by
        # this thread, not by a worker (cross-thread frees fragment the allocator's arenas)
        self._pending: deque[tuple[list[Future[None]], int, memoryview]] = deque()
        self._in_flight = 0

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._pos

    def with_sink(self, sink: Sink) -> Hasher:
        """Write every later chunk to ``sink`` as well (after a resume re-read the start)."""
        self._wait()
        self._sink = sink
        return self

    def finish_pending(self) -> None:
        """Wait until every chunk fed so far is hashed (and written)."""
        self._wait()

    def _wait(self, budget: int = 0) -> None:
        while self._pending and self._in_flight > budget:
            futures, size, _chunk = self._pending.popleft()
            for fut in futures:
                fut.result()
            self._in_flight -= size

    def _note_head(self, chunk: memoryview) -> None:
        """Keep the file's first bytes until the AutoV3 start is known and, when a function
        decides, until the whole header has arrived; then decide."""
        used = 0
        if len(self._head) < 9:
            used = 9 - len(self._head)
            self._head += chunk[:used]
            if len(self._head) < 9:
                return
            (length,) = struct.unpack("<Q", self._head[:8])
            if length > MAX_HEADER or self._head[8:9] != b"{":
                self._v3 = self._decide = None  # not a safetensors file: no AutoV3
                return
            self._v3_start = 8 + length
        if self._decide is None or self._v3_start is None:
            return
        self._head += chunk[used : used + self._v3_start - len(self._head)]
        if len(self._head) >= self._v3_start:
            if not self._decide(bytes(self._head[8:])):
                self._v3 = None
            self._decide = None
            del self._head[9:]

    def update(self, chunk: Any) -> None:
        """Feed the next bytes (anything with the buffer protocol)."""
        view = memoryview(chunk).cast("B")
        start, end = self._pos, self._pos + len(view)
        self._pos = end
        if len(self._head) < 9 or self._decide is not None:
            self._note_head(view)
        sink_lane, sha_lane, v3_lane = self._lanes
        futures = [sha_lane.submit(self._sha.update, view)]
        if self._sink is not None:
            futures.append(sink_lane.submit(self._sink.write, view))
        v3 = self._v3
        if v3 is not None and self._v3_start is not None and end > self._v3_start:
            futures.append(v3_lane.submit(v3.update, view[max(0, self._v3_start - start) :]))
        self._xxh.update(view)
        lo, hi = max(start, AUTOV1_OFFSET), min(end, AUTOV1_OFFSET + AUTOV1_LENGTH)
        if lo < hi:
            self._v1.update(view[lo - start : hi - start])
        self._pending.append((futures, len(view), view))
        self._in_flight += len(view)
        self._wait(self.PIPELINE_BYTES)

    def _shutdown(self) -> None:
        for lane in self._lanes:
            lane.shutdown()

    def finish(self) -> FileHashes:
        """Wait for the workers and return the hashes of everything fed so far."""
        self._wait()
        self._shutdown()
        size = self._pos
        autov3 = None
        if self._v3 is not None and self._v3_start is not None and self._v3_start <= size:
            autov3 = self._v3.hexdigest()
        return FileHashes(
            xxh3_128=self._xxh.hexdigest(),
            sha256=self._sha.hexdigest(),
            autov1=self._v1.hexdigest()[:8] if size >= AUTOV1_MIN_SIZE else None,
            autov3=autov3,
        )

    def abort(self) -> None:
        try:
            self._wait()
        finally:
            self._shutdown()


def read_chunks(fh: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield fresh byte strings from ``fh`` until EOF."""
    while chunk := fh.read(chunk_size):
        yield chunk


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino, a.st_dev) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ino,
        b.st_dev,
    )


def _read_into_ring(fh: BinaryIO, hasher: Hasher, size: int) -> Iterator[int]:
    """Read ``fh`` (of about ``size`` bytes) to EOF into a ring of reused buffers, feeding
    each to ``hasher`` (which keeps at most ``PIPELINE_BYTES`` in flight, so the buffer read
    next is free); yields the size of each read. Buffers are made as the file needs them."""
    slots, ring = hasher.PIPELINE_BYTES // CHUNK_SIZE + 1, []
    length = min(CHUNK_SIZE, size + 1)  # + 1: a small file ends in one read and one EOF
    turn = 0
    while True:
        if turn == len(ring):
            ring.append(bytearray(length))
        n = fh.readinto(ring[turn])
        if not n:
            return
        hasher.update(memoryview(ring[turn])[:n])
        yield n
        turn = (turn + 1) % slots


def hash_file(
    path: str | os.PathLike[str],
    sink: Sink | None = None,
    progress: Callable[[int], None] | None = None,
    autov3: bool | Callable[[bytes], bool] = True,
) -> tuple[FileHashes, FileStat]:
    """Hash a regular file in one pass, optionally copying its bytes to ``sink``; ``autov3``
    as for :class:`Hasher`.

    The file is opened once and ``fstat``-ed before and after: a file that changes while it
    is read raises :class:`InvalidFileError` rather than yielding hashes of mixed bytes.
    """
    path = Path(path)
    hasher = Hasher(sink, autov3)
    try:
        with path.open("rb", buffering=0) as fh:
            before = os.fstat(fh.fileno())
            for n in _read_into_ring(fh, hasher, before.st_size):
                if progress is not None:
                    progress(n)
            after = os.fstat(fh.fileno())
    except BaseException:
        hasher.abort()
        raise
    hashes = hasher.finish()
    if not _same_file(before, after) or hasher.size != after.st_size:
        raise InvalidFileError(path, "the file changed while it was being read")
    return hashes, FileStat.of(after)


SMALL_FILE = 16 << 20  # up to this size, :func:`hash_small_file` reads a file in one call


def hash_small_file(
    path: str | os.PathLike[str], autov3: bool = True
) -> tuple[FileHashes, FileStat]:
    """The hashes of a file of at most :data:`SMALL_FILE` bytes, read in one call and hashed on
    the calling thread: what a pool of workers hashing many small add-ons wants (no per-file
    worker threads). The same values as :func:`hash_file`; a larger file is handed to it."""
    path = Path(path)
    with path.open("rb", buffering=0) as fh:
        before = os.fstat(fh.fileno())
        if before.st_size > SMALL_FILE:
            return hash_file(path, autov3=autov3)
        data = fh.read(before.st_size + 1)
        after = os.fstat(fh.fileno())
    if not _same_file(before, after) or len(data) != after.st_size:
        raise InvalidFileError(path, "the file changed while it was being read")
    view = memoryview(data)
    v3 = None
    if autov3 and len(data) >= 9 and data[8:9] == b"{":
        (length,) = struct.unpack("<Q", data[:8])
        if length <= MAX_HEADER and 8 + length <= len(data):
            v3 = hashlib.sha256(view[8 + length :]).hexdigest()
    v1 = None
    if len(data) >= AUTOV1_MIN_SIZE:
        v1 = hashlib.sha256(view[AUTOV1_OFFSET : AUTOV1_OFFSET + AUTOV1_LENGTH]).hexdigest()[:8]
    hashes = FileHashes(
        xxh3_128=xxhash.xxh3_128_hexdigest(view),
        sha256=hashlib.sha256(view).hexdigest(),
        autov1=v1,
        autov3=v3,
    )
    return hashes, FileStat.of(after)


def autov3_of(path: str | os.PathLike[str], expected: FileStat | None = None) -> str | None:
    """The AutoV3 of a safetensors file (None for any other file), computed now; a file whose
    size, mtime or inode differ from ``expected`` raises :class:`InvalidFileError`."""
    path = Path(path)
    with path.open("rb", buffering=0) as fh:
        before = os.fstat(fh.fileno())
        if expected is not None and FileStat.of(before) != expected:
            raise InvalidFileError(path, "the file changed since it was registered")
        head = fh.read(9)
        if len(head) < 9 or head[8:9] != b"{":
            return None
        (length,) = struct.unpack("<Q", head[:8])
        if length > MAX_HEADER or 8 + length > before.st_size:
            return None
        fh.seek(8 + length)
        sha = hashlib.sha256()
        buf = bytearray(CHUNK_SIZE)
        while n := fh.readinto(buf):
            sha.update(memoryview(buf)[:n])
        if not _same_file(before, os.fstat(fh.fileno())):
            raise InvalidFileError(path, "the file changed while it was being read")
    return sha.hexdigest()


def blake3_of(path: str | os.PathLike[str], expected: FileStat | None = None) -> str:
    """The BLAKE3 of a whole file (as InvokeAI names models), computed now on every core; a
    file whose size, mtime or inode differ from ``expected`` raises
    :class:`InvalidFileError`."""
    from blake3 import blake3

    path = Path(path)
    digest = blake3(max_threads=blake3.AUTO)
    with path.open("rb", buffering=0) as fh:
        before = os.fstat(fh.fileno())
        if expected is not None and FileStat.of(before) != expected:
            raise InvalidFileError(path, "the file changed since it was registered")
        buf = bytearray(CHUNK_SIZE)
        while n := fh.readinto(buf):
            digest.update(memoryview(buf)[:n])
        if not _same_file(before, os.fstat(fh.fileno())):
            raise InvalidFileError(path, "the file changed while it was being read")
    return digest.hexdigest()


def hash_folder(path: str | os.PathLike[str]) -> tuple[FileHashes, FileStat]:
    """Hashes of a folder (a diffusers model): the hashes of its manifest, one line per file
    with its relative path and SHA-256, sorted. The size is the total of its files."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    lines, total = [], 0
    for file in files:
        hashes, st = hash_file(file, autov3=False)
        total += st.size
        lines.append(f"{file.relative_to(root).as_posix()}\t{hashes.sha256}\n")
    manifest = "".join(lines).encode()
    st = os.stat(root)
    return (
        FileHashes(xxhash.xxh3_128_hexdigest(manifest), hashlib.sha256(manifest).hexdigest()),
        FileStat(total, st.st_mtime_ns, st.st_ino),
    )
