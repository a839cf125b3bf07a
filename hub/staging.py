"""Writing a new artifact (a conversion, a merge, a converted pickle) where nothing sees it until
it is registered: a staging folder on the store's file system, the bytes hashed while they are
written, one commit, and the folder removed whatever happens."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.hashing import FileHashes, Hasher, hash_file, hash_folder
from hub.core.sidecars import Sidecars
from hub.plugins.probing import Identification
from hub.register import Lineage, Overrides, commit, identify_path


@dataclass
class StagedOutput:
    """A staging folder and the hasher to feed the output's bytes to while writing them."""

    ctx: Context
    folder: Path
    hasher: Hasher
    autov3: bool

    def _hashes(self, path: Path) -> tuple[FileHashes, int]:
        """The hasher's result when it was fed the whole file, else the file hashed now."""
        if path.is_file() and self.hasher.size == path.stat().st_size > 0:
            return self.hasher.finish(), self.hasher.size
        self.hasher.abort()
        hashes, stat = hash_folder(path) if path.is_dir() else hash_file(path, autov3=self.autov3)
        return hashes, stat.size

    def commit(
        self,
        path: Path,
        filename: str,
        *,
        lineage: Lineage | list[Lineage],
        source: str,
        overrides: Overrides | None = None,
        sidecars: Sidecars | None = None,
        ident: Identification | None = None,
        copy_to: Path | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Register ``path`` (a file or folder in :attr:`folder`) as ``filename`` in the
        store: ``("added", json)`` or ``("exists", json)``. ``ident`` defaults to what the
        probes say; ``copy_to`` also gets a copy of the file."""
        hashes, size = self._hashes(path)
        if copy_to is not None:
            shutil.copyfile(path, copy_to)
        return commit(
            self.ctx,
            path,
            ident or identify_path(self.ctx, path),
            hashes,
            size,
            overrides or Overrides(),
            sidecars or Sidecars(),
            filename,
            source=source,
            lineage=lineage,
        )


@contextmanager
def staged_output(ctx: Context, autov3: bool = False) -> Iterator[StagedOutput]:
    """A fresh staging folder for one output, removed when the block ends (committed or
    not); ``autov3``: whether the output's AutoV3 is computed in the hashing pass."""
    folder = ctx.store.staging_dir()
    staged = StagedOutput(ctx, folder, Hasher(autov3=autov3), autov3)
    try:
        yield staged
    finally:
        staged.hasher.abort()
        shutil.rmtree(folder, ignore_errors=True)
