"""``hub export`` / ``hub import-registry``: a registry's metadata as one versioned JSON file,
merged into another registry by content hash.

Everything a user saw is kept (artifacts with their hashes, paths, the share site's JSON,
header metadata, trained words, tags with their origin, lineage), so a model taken down from
its share site keeps its page. Importing never duplicates: an artifact whose bytes the target
already knows only gains the tags it lacks; a new one is added, marked ``missing`` when its
file is not on this machine (``hub install sha256:...`` from a team server brings it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import ConfigError
from hub.core.files import read_json
from hub.core.managed_block import write_atomically
from hub.registry import writes
from hub.registry.db import Writer
from hub.registry.queries import timestamp_text

FORMAT = "sd-hub-registry"
VERSION = 1
_SKIP = ("id",)  # the target numbers its own rows


def export(ctx: Context) -> dict[str, Any]:
    """The registry's metadata, sorted by SHA-256 (stable across runs and engines)."""
    with ctx.db.reader() as reader:
        rows = reader.rows("SELECT * FROM artifact ORDER BY sha256, xxh3_128")
        tags = reader.rows("SELECT artifact_id, name, origin FROM tag ORDER BY name")
        lineage = reader.rows(
            "SELECT child_id, parent_sha256, relation, params FROM lineage ORDER BY id"
        )
    by_id: dict[int, dict[str, Any]] = {}
    for row in rows:
        art = {k: timestamp_text(v) for k, v in row.items() if k not in _SKIP}
        art |= {"in_store": bool(art["in_store"]), "kind_locked": bool(art["kind_locked"])}
        art |= {"base_locked": bool(art["base_locked"]), "tags": [], "lineage": []}
        by_id[row["id"]] = art
    for t in tags:
        by_id[t["artifact_id"]]["tags"].append([t["name"], t["origin"]])
    for line in lineage:
        by_id[line["child_id"]]["lineage"].append(
            {k: line[k] for k in ("parent_sha256", "relation", "params")}
        )
    return {"format": FORMAT, "version": VERSION, "artifacts": list(by_id.values())}


def write(data: dict[str, Any], path: Path) -> None:
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read(path: Path) -> dict[str, Any]:
    """An export file, checked enough to merge."""
    data = read_json(path, "a registry export")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a registry export (made by `hub export`)")
    if data.get("version") != VERSION:
        raise ConfigError(f"{path}: export version {data.get('version')}, this reads {VERSION}")
    return data


@dataclass
class MergeReport:
    added: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)  # known bytes: tags added
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _values(session: Writer, art: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in art.items() if k not in ("tags", "lineage")}
    for key in ("created_at", "updated_at"):
        if session.dialect != "sqlite":
            values[key] = datetime.fromisoformat(values[key]).replace(tzinfo=UTC)
    if not Path(values["path"]).exists():
        values["hash_status"] = "missing"
    return values


def merge(ctx: Context, data: dict[str, Any]) -> MergeReport:
    """Merge an export into this registry by content hash (see the module's docstring)."""
    report = MergeReport()
    new: list[tuple[writes.Row, dict[str, Any]]] = []
    with ctx.db.session() as session:
        for art in data["artifacts"]:
            known = writes.find_by_hash(session, art["xxh3_128"])
            if known is not None:
                for origin in sorted({o for _, o in art["tags"]}):
                    writes.add_tags(session, known, [n for n, o in art["tags"] if o == origin])
                report.merged.append(art["sha256"])
                continue
            if writes.find_by_path(session, art["path"]) is not None:
                report.skipped.append((art["sha256"], f"{art['path']} holds other bytes here"))
                continue
            row = writes.insert(session, _values(session, art), [tuple(t) for t in art["tags"]])
            new.append((row, art))
            report.added.append(art["sha256"])
        for row, art in new:
            for line in art["lineage"]:
                parents = session.rows(
                    "SELECT id FROM artifact WHERE sha256 = :s", {"s": line["parent_sha256"]}
                )
                parent = writes.get(session, parents[0]["id"]) if parents else None
                writes.add_lineage(
                    session,
                    row,
                    parent,
                    line["relation"],
                    json.loads(line["params"] or "{}"),
                    line["parent_sha256"],
                )
    return report
