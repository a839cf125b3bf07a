"""``hub import``: copy files into the store (hashing while copying) and register them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import InvalidFileError
from hub.core.files import DurableWriter
from hub.core.hashing import FileHashes, hash_file, hash_folder
from hub.core.sidecars import Sidecars, read_sidecars
from hub.plugins.probing import Identification
from hub.register import (
    Overrides,
    autov3_in_pass,
    commit,
    default_name,
    identify_path,
)


@dataclass(frozen=True)
class ImportResult:
    source: Path
    status: str  # "added" or "exists"
    artifact: dict[str, Any]


def _stage(
    ctx: Context, path: Path, progress: Callable[[int], None] | None, autov3: bool
) -> tuple[Path, FileHashes, int]:
    """Copy ``path`` into the staging folder while hashing it: (copy, hashes, size)."""
    if path.is_dir():
        staged = ctx.store.staging_dir() / path.name
        shutil.copytree(path, staged, symlinks=False)
        hashes, stat = hash_folder(staged)
        return staged, hashes, stat.size
    fd, staged = ctx.store.staging_file(suffix="".join(path.suffixes[-1:]))
    os.close(fd)
    try:
        with DurableWriter(staged, length=path.stat().st_size) as writer:
            hashes, stat = hash_file(path, sink=writer, progress=progress, autov3=autov3)
            writer.sync()
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
    keep_pickle: bool = False,
    keep_pickle_only: bool = False,
) -> ImportResult:
    """Identify, copy and register one file or diffusers folder; the same bytes twice are one
    artifact. A pickle is converted to safetensors (``keep_pickle`` registers the original
    too). Bad input raises :class:`InvalidFileError` before anything is written."""
    path = Path(path)
    if not path.exists():
        raise InvalidFileError(path, "no such file or folder")
    ident = identify_path(ctx, path)
    sidecars = read_sidecars(path)
    if ident.format == "pickle" and not keep_pickle_only:
        return _import_pickle(ctx, path, ident, overrides, sidecars, keep_pickle, progress)
    kind = overrides.kind or ident.best.kind
    staged, hashes, size = _stage(ctx, path, progress, autov3_in_pass(kind))
    filename = (overrides.name or default_name(path)) + (
        "" if path.is_dir() else "".join(path.suffixes[-1:])
    )
    try:
        return ImportResult(
            path, *commit(ctx, staged, ident, hashes, size, overrides, sidecars, filename)
        )
    finally:
        _discard(staged.parent if path.is_dir() else staged)


def _import_pickle(
    ctx: Context,
    path: Path,
    ident: Identification,
    overrides: Overrides,
    sidecars: Sidecars,
    keep_pickle: bool,
    progress: Callable[[int], None] | None,
) -> ImportResult:
    """A pickle is registered as the safetensors file converted from it (with the pickle's
    hash in its lineage); ``keep_pickle`` registers the original too."""
    from hub.convert import ingest_pickle

    parent = None
    if keep_pickle:
        parent = import_path(
            ctx,
            path,
            Overrides(ident.best.kind, overrides.base, overrides.name, overrides.tags),
            progress,
            keep_pickle_only=True,
        )
        pickle_sha = parent.artifact["hashes"]["sha256"]
    else:
        pickle_sha = hash_file(path, autov3=False)[0].sha256
    status, artifact, _ = ingest_pickle(
        ctx,
        path,
        ident,
        overrides.name or default_name(path),
        str(overrides.kind or ident.best.kind),
        pickle_sha,
        overrides,
        sidecars,
        parent_id=parent.artifact["id"] if parent else None,
    )
    artifact["converted_from"] = {"format": "pickle", "sha256": pickle_sha}
    return ImportResult(path, status, artifact)
