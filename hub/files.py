"""File-system helpers shared by every writer of large files."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

_KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE: reserve blocks, leave the file's length alone


@cache
def _fallocate() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fn.restype = ctypes.c_int
    return fn


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve disk blocks for ``length`` bytes from ``offset`` of an open file without
    changing its length (Linux ``fallocate`` with KEEP_SIZE): the writes that follow skip
    block allocation, which on ext4 can cost more than copying the bytes. A no-op where the
    call or the file system does not support it (never emulated by writing zeros)."""
    fn = _fallocate()
    if fn is not None and length > 0:
        fn(fd, _KEEP_SIZE, offset, length)  # failure only means no reservation
