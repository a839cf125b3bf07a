"""Turning a local file into registry values: identify it, hash it, read its sidecars.

Shared by ``hub import`` (copies into the store) and ``hub scan`` (registers in place).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.hashing import FileHashes, FileStat
from hub.core.sidecars import Sidecars
from hub.core.taxonomy import ADDON_KINDS, Base, Format, Kind
from hub.plugins.probing import Identification, Subject, identify, make_subject

if TYPE_CHECKING:
    from hub.registry.db import Writer


@dataclass(frozen=True)
class Overrides:
    """What the user said about a file, which identification must not undo."""

    kind: Kind | None = None
    base: Base | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()


def identify_path(ctx: Context, path: Path) -> Identification:
    """Run every probe on a file or diffusers folder (no tensor data read)."""
    return identify(make_subject(path), ctx.probes)


def autov3_in_pass(kind: str | None) -> bool:
    """Whether a file of ``kind`` gets its AutoV3 in the hashing pass: add-ons do; any other
    file gets it when something asks (:mod:`hub.registry.autov3`)."""
    return kind in ADDON_KINDS


def autov3_by_header(ctx: Context, fallback: str | None = None) -> Callable[[bytes], bool]:
    """For :class:`hub.core.hashing.Hasher`: whether a file gets its AutoV3 in the pass, from its
    safetensors header (the probes' kind, or ``fallback`` when they cannot tell). A header
    the probes cannot read gets it, to be safe."""

    def decide(raw: bytes) -> bool:
        try:
            obj = json.loads(raw)
            meta = obj.pop("__metadata__", None)
            keys = {name: tuple(entry["shape"]) for name, entry in obj.items()}
            metadata = meta if isinstance(meta, dict) else {}
            subject = Subject(Path("header"), Format.SAFETENSORS, keys=keys, metadata=metadata)
            kind = identify(subject, ctx.probes).best.kind
        except (ValueError, TypeError, KeyError, AttributeError, HubError):
            return True
        return autov3_in_pass(fallback if kind is Kind.UNKNOWN else kind)

    return decide


def default_name(path: Path) -> str:
    return path.name if path.is_dir() else path.name.split(".", 1)[0] or path.name


def artifact_values(
    path: Path,
    ident: Identification,
    hashes: FileHashes,
    stat: FileStat,
    overrides: Overrides,
    sidecars: Sidecars | None = None,
    in_store: bool = False,
    source: str = "local",
) -> dict[str, Any]:
    """The column values of an artifact row."""
    best = ident.best
    side = sidecars or Sidecars()
    header = ident.metadata
    return {
        "kind": str(overrides.kind or best.kind),
        "name": overrides.name or default_name(path),
        "version": side.version,
        "base": str(overrides.base or best.base),
        "format": str(ident.format),
        "layout": best.layout,
        "algo": best.algo,
        "variant": best.variant,
        "prediction": best.prediction,
        "path": str(path),
        "in_store": in_store,
        "size": stat.size,
        "mtime_ns": stat.mtime_ns,
        "inode": stat.inode,
        "xxh3_128": hashes.xxh3_128,
        "sha256": hashes.sha256,
        "autov1": hashes.autov1,
        "autov3": hashes.autov3,
        "blake3": None,  # computed when something asks for it (hub.registry.ondemand)
        "hash_status": "ok",
        "source": source if side.source_ref is None else side.source_ref["site"],
        "source_ref": json.dumps(side.source_ref) if side.source_ref else None,
        "trained_words": json.dumps(side.trained_words),
        "preferred_weight": side.preferred_weight,
        "description": side.description,
        "preview": str(side.preview) if side.preview else None,
        "header_metadata": json.dumps(header) if header else None,
        "site_json": json.dumps(side.site_json) if side.site_json else None,
        "probe_json": json.dumps(ident.why()),
        "kind_locked": overrides.kind is not None,
        "base_locked": overrides.base is not None,
    }


def tag_list(overrides: Overrides, sidecars: Sidecars | None) -> list[tuple[str, str]]:
    tags = [(t, "user") for t in overrides.tags]
    if sidecars:
        tags += [(t, "site") for t in sidecars.tags]
    return tags


@dataclass(frozen=True)
class Lineage:
    """Where a new artifact came from: a registered parent, or just the parent's hash."""

    parent_id: int | None
    parent_sha256: str | None
    relation: str
    params: dict[str, Any]


def commit(
    ctx: Context,
    staged: Path,
    ident: Identification,
    hashes: FileHashes,
    size: int,
    overrides: Overrides,
    sidecars: Sidecars,
    filename: str,
    source: str = "local",
    lineage: Lineage | list[Lineage] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Move a staged file or folder into the store and register it, in one immediate write
    transaction: ``("added", json)``, or ``("exists", json)`` when the bytes are known here,
    or ``("located", json)`` when they are known on another machine sharing the registry (the
    file is placed in this store and becomes this machine's location of that one row).

    Every new artifact (install, import, merge, convert) passes here: once committed, it is
    linked into the UIs hub.toml marks ``auto_link`` (the json's ``ui_links`` says how)."""
    from hub.registry import writes
    from hub.registry.queries import to_json

    with ctx.db.session() as session:
        existing = writes.find_by_hash(session, hashes.xxh3_128)
        if existing is not None:
            writes.add_tags(session, existing, list(overrides.tags))
            if writes.location_paths(session, existing.id):
                return "exists", to_json(existing, [])
            return "located", _locate_here(ctx, session, existing, staged, filename)
        kind = overrides.kind or ident.best.kind
        final = ctx.store.place(staged, kind, filename, hashes.xxh3_128[:8])
        try:
            artifact = _register_placed(
                session, final, ident, hashes, size, overrides, sidecars, source, lineage
            )
        except BaseException:
            if final.is_dir():
                shutil.rmtree(final, ignore_errors=True)
            else:
                final.unlink(missing_ok=True)
            raise
    if ctx.settings.ui_auto_link:
        from hub.uis import auto_link

        artifact["ui_links"] = auto_link(ctx, [artifact["id"]])
    return "added", artifact


def _locate_here(
    ctx: Context, session: Writer, existing: Any, staged: Path, filename: str
) -> dict[str, Any]:
    """Place the staged bytes of an artifact registered on another machine in this store,
    as this machine's location of it; the artifact's json as this machine sees it."""
    from hub.registry import writes
    from hub.registry.queries import COLUMNS, tags_for, to_json

    final = ctx.store.place(staged, existing.kind, filename, existing.xxh3_128[:8])
    writes.put_location(session, existing.id, writes.Place.of(str(final)), created_by_hub=True)
    row = session.rows(f"SELECT {COLUMNS} FROM artifact a WHERE a.id = :id", {"id": existing.id})
    return to_json(row[0], tags_for(session, [existing.id]).get(existing.id, []))


def _register_placed(
    session: Writer,
    final: Path,
    ident: Identification,
    hashes: FileHashes,
    size: int,
    overrides: Overrides,
    sidecars: Sidecars,
    source: str,
    lineage: Lineage | list[Lineage] | None,
) -> dict[str, Any]:
    """Insert the row of a file just placed in the store at ``final`` (its preview copied
    beside it, its family settled, its lineage linked); the new artifact's json."""
    from hub.families import settle_in
    from hub.registry import writes
    from hub.registry.queries import to_json

    if sidecars.preview is not None:
        sidecars.preview = copy_preview(sidecars.preview, final)
    st = os.stat(final)
    values = artifact_values(
        final,
        ident,
        hashes,
        FileStat(size, st.st_mtime_ns, st.st_ino),
        overrides,
        sidecars,
        in_store=True,
        source=source,
    )
    tags = tag_list(overrides, sidecars)
    artifact = writes.insert(session, values, tags)
    settle_in(session, [artifact.id])  # its family, from the evidence (hub.families)
    artifact = writes.get(session, artifact.id)
    parents = lineage if isinstance(lineage, list) else [lineage] if lineage else []
    for link in parents:
        parent = writes.get(session, link.parent_id) if link.parent_id else None
        writes.add_lineage(
            session, artifact, parent, link.relation, link.params, link.parent_sha256
        )
    return to_json(artifact, sorted({t.lower() for t, _ in tags}))


def copy_preview(preview: Path, model: Path) -> Path:
    """Copy a preview image beside a stored model as ``<stem>.preview.<ext>``."""
    stem = model.name if model.is_dir() else model.stem
    target = model.with_name(f"{stem}.preview{preview.suffix.lower()}")
    shutil.copyfile(preview, target)
    return target
