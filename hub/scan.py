"""``hub scan``: register the model files under a folder in place, incrementally.

A file whose size, mtime and inode match its row is not read again. Real paths are resolved,
so a symlinked folder or a second link to a file is one row; loops and files that vanish
mid-scan are reported and skipped.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.context import Context
from hub.core.errors import HubError, InvalidFileError, RegistryError
from hub.core.hashing import FileStat, hash_file, hash_folder
from hub.core.sidecars import read_sidecars
from hub.register import (
    Overrides,
    artifact_values,
    autov3_in_pass,
    identify_path,
    tag_list,
)
from hub.registry import writes
from hub.registry.queries import stat_index
from hub.registry.store import STAGING

MODEL_SUFFIXES = {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin"}


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    hashed_bytes: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, registered path)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "hashed_bytes": self.hashed_bytes,
            "duplicates": [{"path": p, "same_as": o} for p, o in self.duplicates],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def walk_models(root: Path, report: ScanReport) -> Iterator[Path]:
    """Model files and diffusers folders under ``root``, following symlinks without loops."""
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            report.skipped.append((str(folder), f"cannot open folder: {exc.strerror}"))
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            if folder != root:
                report.skipped.append((str(folder), "folder already visited (symlink loop)"))
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        if (folder / "model_index.json").is_file():
            yield folder
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            report.skipped.append((str(folder), f"cannot list folder: {exc.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name == STAGING:
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                subdirs.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in MODEL_SUFFIXES:
                yield Path(entry.path)
        stack.extend(reversed(subdirs))


def scan(ctx: Context, root: Path, progress: Callable[[str], None] | None = None) -> ScanReport:
    """Register every model under ``root`` in place; re-hash only what changed."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidFileError(root, "not a folder")
    report = ScanReport()
    with ctx.db.reader() as reader:
        index = stat_index(reader)
    seen: set[tuple[int, int]] = set()  # (device, inode): a second link is the same file
    for found in walk_models(root, report):
        try:
            real = found.resolve(strict=True)
            st = os.stat(real)
        except (OSError, RuntimeError):
            report.skipped.append((str(found), "vanished or dangling link"))
            continue
        key = str(real)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if not (statmod.S_ISREG(st.st_mode) or statmod.S_ISDIR(st.st_mode)):
            report.skipped.append((key, "not a regular file"))
            continue
        row = index.get(key)
        if (
            row is not None
            and not real.is_dir()
            and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino)
        ):
            report.unchanged += 1
            continue
        if progress:
            progress(key)
        try:
            _register_one(ctx, real, report)
        except RegistryError:
            raise  # the registry itself failed (its server went away): stop, not skip
        except HubError as exc:
            report.skipped.append((key, getattr(exc, "reason", exc.message)))
        except FileNotFoundError:
            report.skipped.append((key, "vanished during the scan"))
    if report.added or report.updated:
        from hub.families import settle

        settle(ctx.db)  # families (and add-ons trained on what was added) from the evidence
    return report


def _register_one(ctx: Context, path: Path, report: ScanReport) -> None:
    ident = identify_path(ctx, path)
    if path.is_dir():
        hashes, fstat = hash_folder(path)
    else:
        hashes, fstat = hash_file(path, autov3=autov3_in_pass(ident.best.kind))
        if FileStat.of(os.stat(path)) != fstat:
            raise InvalidFileError(path, "the file changed while it was being read")
    report.hashed_bytes += fstat.size
    sidecars = read_sidecars(path)
    with ctx.db.session() as session:
        by_path = writes.find_by_path(session, str(path))
        by_hash = writes.find_by_hash(session, hashes.xxh3_128)
        if by_path is not None:
            locked = Overrides(
                kind=by_path.kind if by_path.kind_locked else None,
                base=by_path.base if by_path.base_locked else None,
                name=by_path.name,
            )
            if by_hash is not None and by_hash.id != by_path.id:
                report.duplicates.append((str(path), by_hash.path))
                return
            values = artifact_values(path, ident, hashes, fstat, locked, sidecars)
            values.pop("created_at", None)
            writes.update(session, by_path, values)
            report.updated.append(str(path))
        elif by_hash is not None:
            if Path(by_hash.path).exists():
                report.duplicates.append((str(path), by_hash.path))
                return
            writes.update(
                session,
                by_hash,
                {
                    "path": str(path),
                    "size": fstat.size,
                    "mtime_ns": fstat.mtime_ns,
                    "inode": fstat.inode,
                    "in_store": False,
                    "hash_status": "ok",
                },
            )
            report.updated.append(str(path))
        else:
            writes.insert(
                session,
                artifact_values(path, ident, hashes, fstat, Overrides(), sidecars),
                tag_list(Overrides(), sidecars),
            )
            report.added.append(str(path))
