"""Making a file appear at a second path without copying it: a hard link, a reflink
(``FICLONE``: shared extents on btrfs, XFS, bcachefs...) or a symlink, and telling later
whether a path is still the link that was made."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "hardlink", "reflink", "symlink")
FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h
# A hard link or reflink cannot be made here: another file system, or one without them.
_CANNOT = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL}


class LinkError(OSError):
    """No link of the asked mode can be made (the reason is the OS error's)."""


@dataclass(frozen=True)
class LinkStat:
    """What identifies a link once made: its mode and the stat of the link path itself."""

    mode: str
    device: int
    inode: int
    size: int
    mtime_ns: int


def reflink(source: Path, dest: Path) -> None:
    """Clone ``source`` to a new file ``dest`` sharing its extents; raises OSError where the
    file system offers no clone (``dest`` is not left behind)."""
    import fcntl

    with open(source, "rb") as src:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.ioctl(fd, FICLONE, src.fileno())
        except OSError:
            os.close(fd)
            dest.unlink(missing_ok=True)
            raise
        os.close(fd)


def _try(mode: str, target: Path, dest: Path) -> None:
    if mode == "hardlink":
        os.link(target, dest)
    elif mode == "reflink":
        reflink(target, dest)
    else:
        os.symlink(target, dest, target_is_directory=target.is_dir())


def make_link(target: Path, dest: Path, mode: str = "auto") -> LinkStat:
    """Make ``dest`` show ``target``: in ``auto`` mode a hard link, else a reflink, else a
    symlink (a folder is always symlinked); never a copy. Never replaces an existing
    ``dest`` (``FileExistsError``); :class:`LinkError` when the mode cannot be made here."""
    if mode == "auto":
        order = ["symlink"] if target.is_dir() else ["hardlink", "reflink", "symlink"]
    else:
        order = [mode]
    if target.is_dir() and order != ["symlink"]:
        raise LinkError(errno.EISDIR, f"a folder can only be symlinked, not {mode}ed", str(target))
    last: OSError | None = None
    for attempt in order:
        try:
            _try(attempt, target, dest)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _CANNOT:
                raise
            last = exc
            continue
        return link_stat(dest, attempt)
    assert last is not None
    raise LinkError(last.errno, last.strerror, str(dest))


def link_stat(path: Path, mode: str) -> LinkStat:
    """The identity of the link at ``path`` (a symlink's own stat, not its target's)."""
    st = os.lstat(path)
    return LinkStat(mode, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def is_same_link(path: Path, made: LinkStat, target: Path) -> bool:
    """Whether ``path`` is still the link that was made (``made``) to ``target``: a symlink
    still pointing there; a hard link with the same device and inode; a reflink also
    unchanged in size and mtime (edited, it is the user's file)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if made.mode == "symlink":
        return path.is_symlink() and os.readlink(path) == str(target)
    if path.is_symlink() or (st.st_dev, st.st_ino) != (made.device, made.inode):
        return False
    return made.mode == "hardlink" or (st.st_size, st.st_mtime_ns) == (made.size, made.mtime_ns)
