"""The file store: one copy per content hash under ``$HUB_HOME/models/<A1111 folder>/``.

Files arrive in a staging folder on the same file system, are fsync-ed, then linked into
place under a name no other file holds (never overwriting), before the registry row commits.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path

from hub.core.taxonomy import A1111_FOLDERS, Kind

STAGING = ".incoming"
MAX_NAME_BYTES = 200  # leaves room for suffixes on 255-byte file systems
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_component(name: str, fallback: str = "model") -> str:
    """Reduce an untrusted file name to one safe path component (no folders, no tricks)."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", name).strip().lstrip(".").rstrip(". ")
    stem = name.split(".", 1)[0].lower()
    if not name or name in {".", ".."} or stem in _RESERVED:
        name = f"{fallback}_{name}" if name and name not in {".", ".."} else fallback
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        root, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 16:
            root, ext = name, ""
        keep = MAX_NAME_BYTES - len(ext.encode()) - 1
        root = root.encode("utf-8")[:keep].decode("utf-8", "ignore")
        name = f"{root}.{ext}" if ext else root
    return name


class Store:
    """The model folders under one home."""

    def __init__(self, models_dir: Path) -> None:
        self.root = models_dir

    def folder(self, kind: Kind | str) -> Path:
        return self.root / A1111_FOLDERS[Kind(kind)]

    def staging_file(self, suffix: str = "") -> tuple[int, Path]:
        """A new temp file (fd, path) on the store's file system."""
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="part-", suffix=suffix, dir=staging)
        return fd, Path(name)

    def staging_dir(self) -> Path:
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="part-", dir=staging))

    def place(self, staged: Path, kind: Kind | str, filename: str, tag: str) -> Path:
        """Move a staged file or folder into the kind's folder under a free name.

        ``tag`` (a short content hash) disambiguates when the name is taken by other bytes.
        """
        folder = self.folder(kind)
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_component(filename)
        stem, dot, ext = name.rpartition(".") if not staged.is_dir() else (name, "", "")
        if not dot:
            stem, ext = name, ""
        candidates = [name, f"{stem}-{tag}{dot}{ext}"]
        candidates += [f"{stem}-{tag}-{n}{dot}{ext}" for n in range(2, 100)]
        for candidate in candidates:
            target = folder / candidate
            try:
                if staged.is_dir():
                    target.mkdir()  # claims the name atomically
                    os.replace(staged, target)
                else:
                    os.link(staged, target)  # fails if the name exists: never overwrites
                    staged.unlink()
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (18, 1, 95):  # EXDEV/EPERM/EOPNOTSUPP: no hard links here
                    if target.exists():
                        continue
                    os.replace(staged, target)
                else:
                    raise
            fsync_dir(folder)
            return target
        raise FileExistsError(f"no free name for {name} in {folder}")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
