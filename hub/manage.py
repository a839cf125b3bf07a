"""Editing what the registry says: tags, kind/base overrides, removal."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.sidecars import preview_of
from hub.core.taxonomy import Base, Kind
from hub.registry import writes
from hub.registry.queries import resolve, tags_for, to_json
from hub.uis import unlink_artifact


def _resolve_id(ctx: Context, ref: str) -> int:
    with ctx.db.reader() as reader:
        return resolve(reader, ref)["id"]


def _json(ctx: Context, artifact_id: int) -> dict[str, Any]:
    with ctx.db.reader() as reader:
        row = reader.rows("SELECT * FROM artifact WHERE id = :id", {"id": artifact_id})[0]
        return to_json(row, tags_for(reader, [artifact_id]).get(artifact_id, []))


def tag(ctx: Context, ref: str, names: list[str]) -> dict[str, Any]:
    artifact_id = _resolve_id(ctx, ref)
    with ctx.db.session() as session:
        writes.add_tags(session, writes.get(session, artifact_id), names, origin="user")
    return _json(ctx, artifact_id)


def untag(ctx: Context, ref: str, names: list[str]) -> dict[str, Any]:
    artifact_id = _resolve_id(ctx, ref)
    with ctx.db.session() as session:
        writes.remove_tags(session, writes.get(session, artifact_id), names)
    return _json(ctx, artifact_id)


def set_identity(
    ctx: Context, ref: str, kind: Kind | None, base: Base | None, family: str | None = None
) -> dict[str, Any]:
    """Override kind, base and/or family; the override sticks through later scans. The
    family ``auto`` goes back to what the evidence says (:mod:`hub.families`)."""
    from hub import families

    artifact_id = _resolve_id(ctx, ref)
    values: dict[str, Any] = {}
    if kind is not None:
        values |= {"kind": str(kind), "kind_locked": True}
    if base is not None:
        values |= {"base": str(base), "base_locked": True}
    with ctx.db.session() as session:
        writes.update(session, writes.get(session, artifact_id), values)
    if family is not None:
        auto = family.strip().lower() == "auto"
        families.lock(ctx.db, artifact_id, None if auto else families.normalize_label(family))
    return _json(ctx, artifact_id)


@dataclass(frozen=True)
class Removal:
    artifact: dict[str, Any]
    deleted_file: bool


def remove(ctx: Context, ref: str, keep_file: bool = False) -> Removal:
    """Drop an artifact's row; files the store owns are deleted too unless ``keep_file``.

    Files registered in place by ``hub scan`` are never deleted."""
    artifact_id = _resolve_id(ctx, ref)
    art = _json(ctx, artifact_id)
    path = Path(art["path"])
    delete_file = art["in_store"] and not keep_file
    unlink_artifact(ctx, artifact_id)  # a UI's hard link would keep the bytes alive
    with ctx.db.session() as session:
        writes.remove(session, writes.get(session, artifact_id))
    if delete_file:
        preview = preview_of(path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if preview is not None:
            preview.unlink(missing_ok=True)
    return Removal(art, delete_file)
