"""Writing large files durably and fast: every writer of a model file goes through
:class:`DurableWriter`."""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from typing import Any, BinaryIO

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


class DurableWriter:
    """A binary file being written from ``start`` to (about) ``start + length``, then made
    durable by :meth:`sync`.

    It reserves the blocks up front (``fallocate`` with KEEP_SIZE: the writes that follow
    skip block allocation, never emulated by writing zeros), and as each ``WINDOW`` of bytes
    completes it has the kernel start writing that window back and waits for the window
    before it: the disk works while later bytes arrive, dirty memory stays bounded, and the
    closing fsync has little left to wait for. Elsewhere than Linux it is a plain file.
    """

    WINDOW = 64 << 20

    def __init__(self, out: BinaryIO, start: int = 0, length: int | None = None) -> None:
        self._out = out
        self._fd = out.fileno()
        self._pos = self._waited = self._flushed = start
        self._libc = _libc()
        if self._libc is not None and length:
            self._libc.fallocate(self._fd, _FALLOC_KEEP_SIZE, start, length)  # may refuse

    def write(self, data: Any) -> int:
        n = self._out.write(data)
        self._pos += n
        if self._libc is not None and self._pos - self._flushed >= self.WINDOW:
            self._out.flush()
            if self._flushed > self._waited:  # the window whose writeback started last time
                flags = _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER
                self._sync_range(self._waited, self._flushed, flags)
                self._waited = self._flushed
            self._sync_range(self._flushed, self._pos, _SYNC_WRITE)
            self._flushed = self._pos
        return n

    def _sync_range(self, start: int, end: int, flags: int) -> None:
        if self._libc.sync_file_range(self._fd, start, end - start, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"writing back bytes {start}-{end}: {os.strerror(err)}")

    def sync(self) -> None:
        """Flush and fsync: the bytes written are on disk when this returns."""
        self._out.flush()
        os.fsync(self._fd)
