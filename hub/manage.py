"""Editing what the registry says: tags, kind/base overrides, removal."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import RefNotFoundError
from hub.core.sidecars import preview_of
from hub.core.taxonomy import Base, Kind
from hub.registry import writes
from hub.registry.queries import COLUMNS, locations_of, resolve, tags_for, to_json
from hub.uis import unlink_artifact


def _resolve_id(ctx: Context, ref: str) -> int:
    with ctx.db.reader() as reader:
        return resolve(reader, ref)["id"]


def _json(ctx: Context, artifact_id: int) -> dict[str, Any]:
    with ctx.db.reader() as reader:
        row = reader.rows(
            f"SELECT {COLUMNS} FROM artifact a WHERE a.id = :id", {"id": artifact_id}
        )[0]
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
    """What ``hub rm`` did: ``location`` is set when only that location was forgotten (the
    artifact stays, held by its other locations)."""

    artifact: dict[str, Any]
    deleted_file: bool
    location: str | None = None


def location_owner(ctx: Context, path: str) -> dict[str, Any] | None:
    """The artifact a registered location (a path, resolved) belongs to, or None."""
    real = os.path.realpath(path)
    with ctx.db.reader() as reader:
        rows = reader.rows(
            "SELECT artifact_id FROM location WHERE machine = :machine AND path = :p", {"p": real}
        )
        if not rows:
            return None
        art = _json(ctx, rows[0]["artifact_id"])
        art["locations"] = locations_of(reader, art["id"])
        return art


def remove_location(ctx: Context, path: str, keep_file: bool = False) -> Removal:
    """Forget one location of an artifact; the artifact stays while another location
    remains, else it is removed as :func:`remove` does. A file there is deleted only when
    sd-hub made it (``created_by_hub``) and not ``keep_file``."""
    art = location_owner(ctx, path)
    if art is None:
        raise RefNotFoundError(f"{path}: not a registered location", hint="see `hub show REF`")
    real = os.path.realpath(path)
    if len(art["locations"]) == 1:
        return _remove_artifact(ctx, art["id"], keep_file)
    place = next(p for p in art["locations"] if p["path"] == real)
    with ctx.db.session() as session:
        writes.drop_location(session, writes.get(session, art["id"]), real)
    delete_file = place["created_by_hub"] and not keep_file
    if delete_file:
        Path(real).unlink(missing_ok=True)
    return Removal(_json(ctx, art["id"]), delete_file, location=real)


def _forget_here(ctx: Context, art: dict[str, Any], keep_file: bool) -> Removal:
    """Drop this machine's locations of an artifact other machines still hold (deleting the
    files sd-hub made unless ``keep_file``); the row stays for them."""
    with ctx.db.reader() as reader:
        places = locations_of(reader, art["id"])
    if not places:
        raise RefNotFoundError(
            f"{art['kind']}:{art['name']} has no file on this machine",
            hint="remove it on a machine that holds it",
        )
    with ctx.db.session() as session:
        for place in places:
            writes.drop_location(session, writes.get(session, art["id"]), place["path"])
    deleted = False
    for place in places:
        if place["created_by_hub"] and not keep_file:
            Path(place["path"]).unlink(missing_ok=True)
            deleted = True
    return Removal(_json(ctx, art["id"]), deleted, location=places[0]["path"])


def remove(ctx: Context, ref: str, keep_file: bool = False) -> Removal:
    """Drop an artifact's row; files the store owns are deleted too unless ``keep_file``.

    Files registered in place by ``hub scan`` are never deleted."""
    return _remove_artifact(ctx, _resolve_id(ctx, ref), keep_file)


def _remove_artifact(ctx: Context, artifact_id: int, keep_file: bool) -> Removal:
    art = _json(ctx, artifact_id)
    with ctx.db.reader() as reader:
        elsewhere = reader.rows(
            "SELECT 1 AS x FROM location WHERE artifact_id = :id AND machine <> :machine",
            {"id": artifact_id},
        )
    if elsewhere:  # other machines sharing the registry keep it: forget this machine's copy
        return _forget_here(ctx, art, keep_file)
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
