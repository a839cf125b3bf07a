"""``hub import``: copy files into the store (hashing while copying) and register them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.errors import InvalidFileError
from hub.hashing import FileHashes, FileStat, hash_file, hash_folder
from hub.register import Overrides, artifact_values, default_name, identify_path, tag_list
from hub.registry import writes
from hub.registry.queries import to_json
from hub.sidecars import read_sidecars


@dataclass(frozen=True)
class ImportResult:
    source: Path
    status: str  # "added" or "exists"
    artifact: dict[str, Any]


def _stage(
    ctx: Context, path: Path, progress: Callable[[int], None] | None
) -> tuple[Path, FileHashes, int]:
    """Copy ``path`` into the staging folder while hashing it: (copy, hashes, size)."""
    if path.is_dir():
        staged = ctx.store.staging_dir() / path.name
        shutil.copytree(path, staged, symlinks=False)
        hashes, stat = hash_folder(staged)
        return staged, hashes, stat.size
    fd, staged = ctx.store.staging_file(suffix="".join(path.suffixes[-1:]))
    try:
        with os.fdopen(fd, "wb") as out:
            hashes, stat = hash_file(path, sink=out, progress=progress)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged, hashes, stat.size


def _discard(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def import_path(
    ctx: Context,
    path: Path,
    overrides: Overrides = Overrides(),
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Identify, copy and register one file or diffusers folder; the same bytes twice are one
    artifact. Bad input raises :class:`InvalidFileError` before anything is written."""
    path = Path(path)
    if not path.exists():
        raise InvalidFileError(path, "no such file or folder")
    ident = identify_path(ctx, path)
    sidecars = read_sidecars(path)
    staged, hashes, size = _stage(ctx, path, progress)
    try:
        with ctx.db.session() as session:
            existing = writes.find_by_hash(session, hashes.xxh3_128)
            if existing is not None:
                writes.add_tags(session, existing, list(overrides.tags))
                return ImportResult(path, "exists", to_json(existing.model_dump(), []))
            kind = overrides.kind or ident.best.kind
            filename = (overrides.name or default_name(path)) + (
                "" if path.is_dir() else "".join(path.suffixes[-1:])
            )
            final = ctx.store.place(staged, kind, filename, hashes.xxh3_128[:8])
            try:
                preview = _copy_preview(sidecars.preview, final)
                if preview:
                    sidecars.preview = preview
                st = os.stat(final)
                stat = FileStat(size, st.st_mtime_ns, st.st_ino)
                values = artifact_values(
                    final, ident, hashes, stat, overrides, sidecars, in_store=True
                )
                artifact = writes.insert(session, values, tag_list(overrides, sidecars))
                tags = [t for t, _ in tag_list(overrides, sidecars)]
                return ImportResult(
                    path, "added", to_json(artifact.model_dump(), sorted({t.lower() for t in tags}))
                )
            except BaseException:
                _discard(final)
                raise
    finally:
        _discard(staged.parent if path.is_dir() else staged)


def _copy_preview(preview: Path | None, model: Path) -> Path | None:
    if preview is None:
        return None
    stem = model.name if model.is_dir() else model.stem
    target = model.with_name(f"{stem}.preview{preview.suffix.lower()}")
    shutil.copyfile(preview, target)
    return target
