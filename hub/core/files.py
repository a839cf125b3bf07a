"""Writing large files durably and fast: every writer of a model file goes through
:class:`DurableWriter`. Also :func:`locked`, a cross-process lock whose file goes away, and
:func:`read_json`, a small JSON file read with one-line errors."""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

from hub.core.errors import ConfigError

_FALLOC_KEEP_SIZE = 1  # reserve blocks, leave the file's length alone
_SYNC_WAIT_BEFORE, _SYNC_WRITE, _SYNC_WAIT_AFTER = 1, 2, 4  # sync_file_range flags


@cache
def _libc() -> Any | None:
    """The two Linux calls Python's os module lacks (fallocate with flags, sync_file_range),
    or None where they are not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's
        fd, off, flags = ctypes.c_int, ctypes.c_longlong, ctypes.c_uint
        for name, argtypes in (
            ("fallocate", [fd, ctypes.c_int, off, off]),
            ("sync_file_range", [fd, off, off, flags]),
        ):
            fn = getattr(libc, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _pwrite(fd: int, data: Any, offset: int) -> int:
    """``os.pwrite``, or a seek and a write where there is none (Windows)."""
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


class DurableWriter:
    """Writes ``path`` from byte ``start`` on (what is before it is kept, what is after it is
    cut), about ``length`` bytes, and makes them durable with :meth:`sync`.

    A model file is fsync-ed before it is registered, so the page cache buys nothing for
    it: where the file system allows, the bytes go straight to disk (``O_DIRECT``) from one
    reused aligned buffer, with no copy into newly allocated cache pages, no dirty memory and
    no cache evicted for them. Elsewhere they go through the cache, with the blocks reserved up
    front and each completed ``WINDOW`` written back while later bytes arrive (waiting for the
    window before it bounds dirty memory), so the closing fsync has little left to do.
    Use as a context manager; :meth:`sync` before leaving it keeps the bytes.
    """

    BLOCK = 4096  # alignment of offsets, lengths and memory for O_DIRECT
    BUFFER = 8 << 20
    WINDOW = 64 << 20

    def __init__(self, path: Path, start: int = 0, length: int | None = None) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o666)
        self._synced = False
        try:
            os.ftruncate(self._fd, start)
            self._libc = _libc()
            if self._libc is not None and length:
                self._libc.fallocate(self._fd, _FALLOC_KEEP_SIZE, start, length)  # may refuse
            self._buffer: mmap.mmap | None = None
            self._fill = 0
            self._offset = self._waited = self._flushed = start
            self._direct = self._try_direct(start)
        except BaseException:
            os.close(self._fd)
            raise

    def _try_direct(self, start: int) -> bool:
        """Switch the descriptor to O_DIRECT, with the partial block before ``start`` (a
        resume) loaded into the buffer so that every write lands on a block boundary."""
        if not hasattr(os, "O_DIRECT"):
            return False
        head = start % self.BLOCK
        prefix = os.pread(self._fd, head, start - head) if head else b""
        if len(prefix) != head:
            return False
        try:
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | os.O_DIRECT)
        except OSError:  # the file system does not do direct I/O (tmpfs, some FUSE)
            return False
        self._buffer = mmap.mmap(-1, self.BUFFER)  # page-aligned, reused for every block
        self._buffer[:head] = prefix
        self._fill, self._offset = head, start - head
        return True

    def __enter__(self) -> DurableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Left without sync (an interrupted download): the whole blocks still buffered are
        # written, so that a resume starts after them. A disk that fails here has failed
        # before, and that error is the one to report.
        try:
            if not self._synced and self._fill >= self.BLOCK:
                self._write_buffer(self._fill - self._fill % self.BLOCK)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            if self._buffer is not None:
                self._buffer.close()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            if not self._direct:
                n = _pwrite(self._fd, view[done:], self._offset)
                self._offset += n
                done += n
                continue
            assert self._buffer is not None
            n = min(len(view) - done, self.BUFFER - self._fill)
            self._buffer[self._fill : self._fill + n] = view[done : done + n]
            self._fill += n
            done += n
            if self._fill == self.BUFFER:
                self._write_buffer(self.BUFFER)
        if not self._direct:
            self._write_back()
        return done

    def _write_buffer(self, nbytes: int) -> None:
        """Write the buffer's first ``nbytes`` (a multiple of BLOCK) at the current offset;
        the buffer is then empty. A file system that took the O_DIRECT flag but refuses the
        writes gets them through the cache from here on."""
        assert self._buffer is not None
        view = memoryview(self._buffer)[:nbytes]
        try:
            done = 0
            while done < nbytes:
                try:
                    done += _pwrite(self._fd, view[done:], self._offset + done)
                except OSError as exc:
                    if exc.errno != errno.EINVAL or not self._direct:
                        raise
                    self._leave_direct()
        finally:
            view.release()
        self._offset += nbytes
        self._fill = 0

    def _leave_direct(self) -> None:
        import fcntl

        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        self._direct = False

    def _write_back(self) -> None:
        if self._libc is None or self._offset - self._flushed < self.WINDOW:
            return
        if self._flushed > self._waited:  # the window whose writeback started last time
            flags = _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER
            self._sync_range(self._waited, self._flushed, flags)
            self._waited = self._flushed
        self._sync_range(self._flushed, self._offset, _SYNC_WRITE)
        self._flushed = self._offset

    def _sync_range(self, start: int, end: int, flags: int) -> None:
        if self._libc.sync_file_range(self._fd, start, end - start, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"writing back bytes {start}-{end}: {os.strerror(err)}")

    def sync(self) -> None:
        """Write what is buffered and fsync: the bytes written are on disk when this returns."""
        if self._direct and self._fill:
            assert self._buffer is not None
            end = self._offset + self._fill
            padded = -(-self._fill // self.BLOCK) * self.BLOCK
            self._buffer[self._fill : padded] = bytes(padded - self._fill)
            self._write_buffer(padded)
            os.ftruncate(self._fd, end)
            self._offset = end
        os.fsync(self._fd)
        self._synced = True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes; the lock file is removed on exit.

    The file is unlinked only by its holder, while holding the ``flock``. A waiter that was
    blocked on the unlinked inode wins a lock on nothing: it sees that ``path`` no longer
    names the inode it locked and starts again on the current file, so at most one process
    holds the inode that ``path`` names. Without ``flock`` (Windows) filelock's native lock
    is used; it deletes its file on release itself.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        from filelock import FileLock

        with FileLock(str(path)):
            yield
        return
    fd = _lock_current(path, fcntl)
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # releases the lock


def _lock_current(path: Path, fcntl: Any) -> int:
    """A descriptor of the file ``path`` names, holding its exclusive ``flock``."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(path)
        except FileNotFoundError:  # unlinked by the holder we waited for
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if os.path.samestat(os.fstat(fd), current):
            return fd
        os.close(fd)  # the holder we waited for removed it and another created a new one


def read_json(path: Path, what: str, missing: str = "no such file", hint: str | None = None) -> Any:
    """The JSON in ``path``; a :class:`ConfigError` when it is missing (``missing``, ``hint``)
    or is not JSON (``not {what}``)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}", hint=hint) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not {what}: {exc}") from None
