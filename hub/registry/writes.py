"""Writes to the registry, each inside the caller's ``Database.session()`` transaction.

Plain SQL with ``:name`` parameters through :class:`hub.registry.db.Writer`, like the reads:
registering a file never imports an ORM (a third of a second before anything happens). The
schema is the migrations' (see migrations/); the defaults below are the columns' defaults.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hub.registry.db import Writer

ARTIFACT_DEFAULTS: dict[str, Any] = {
    "version": None,
    "base": "unknown",
    "family": None,
    "layout": None,
    "algo": None,
    "variant": None,
    "prediction": None,
    "in_store": False,
    "size": 0,
    "mtime_ns": 0,
    "inode": 0,
    "autov1": None,
    "autov3": None,
    "blake3": None,
    "hash_status": "ok",
    "source": "local",
    "source_ref": None,
    "trained_words": "[]",
    "preferred_weight": None,
    "description": None,
    "preview": None,
    "header_metadata": None,
    "site_json": None,
    "probe_json": None,
    "kind_locked": False,
    "base_locked": False,
}


class Row(dict[str, Any]):
    """An artifact row: a dict of its columns, also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def utcnow(session: Writer) -> datetime | str:
    """Now in UTC, as the database stores it (SQLite: text with microseconds)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if session.has_fts else now


def _one(session: Writer, where: str, params: dict[str, Any]) -> Row | None:
    rows = session.rows(f"SELECT * FROM artifact WHERE {where} LIMIT 1", params)
    return Row(rows[0]) if rows else None


def find_by_hash(session: Writer, xxh3_128: str) -> Row | None:
    return _one(session, "xxh3_128 = :v", {"v": xxh3_128})


def find_by_path(session: Writer, path: str) -> Row | None:
    return _one(session, "path = :v", {"v": path})


def get(session: Writer, artifact_id: int) -> Row:
    artifact = _one(session, "id = :v", {"v": artifact_id})
    assert artifact is not None, artifact_id
    return artifact


def _tag_names(session: Writer, artifact_id: int) -> list[str]:
    rows = session.rows("SELECT name FROM tag WHERE artifact_id = :id", {"id": artifact_id})
    return [r["name"] for r in rows]


def add_tags(session: Writer, artifact: Row, names: list[str], origin: str = "user") -> list[str]:
    """Attach tags (lower-cased, stripped); returns the ones that were new."""
    have = set(_tag_names(session, artifact.id))
    added = []
    for raw in names:
        name = raw.strip().lower()
        if name and name not in have:
            session.execute(
                "INSERT INTO tag (artifact_id, name, origin) VALUES (:id, :name, :origin)",
                {"id": artifact.id, "name": name, "origin": origin},
            )
            have.add(name)
            added.append(name)
    refresh_search(session, artifact)
    return added


def remove_tags(session: Writer, artifact: Row, names: list[str]) -> int:
    wanted = sorted({n.strip().lower() for n in names})
    marks = ", ".join(f":n{i}" for i in range(len(wanted))) or "NULL"
    removed = session.execute(
        f"DELETE FROM tag WHERE artifact_id = :id AND name IN ({marks})",
        {"id": artifact.id, **{f"n{i}": n for i, n in enumerate(wanted)}},
    )
    refresh_search(session, artifact)
    return removed


def insert(session: Writer, values: dict[str, Any], tags: list[tuple[str, str]]) -> Row:
    """Insert a new artifact row with its tags and search entry."""
    now = utcnow(session)
    columns = ARTIFACT_DEFAULTS | {"created_at": now, "updated_at": now} | values
    names = list(columns)
    [row] = session.rows(
        f"INSERT INTO artifact ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)}) RETURNING id",
        columns,
    )
    artifact = get(session, row["id"])
    for origin in {o for _, o in tags}:
        add_tags(session, artifact, [n for n, o in tags if o == origin], origin)
    refresh_search(session, artifact)
    return artifact


def update(session: Writer, artifact: Row, values: dict[str, Any]) -> Row:
    """Set columns of an artifact (and its ``updated_at``); the row is updated in place."""
    values = {**values, "updated_at": utcnow(session)}
    session.execute(
        f"UPDATE artifact SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = :id_",
        {**values, "id_": artifact.id},
    )
    artifact.update(values)
    refresh_search(session, artifact)
    return artifact


def remove(session: Writer, artifact: Row) -> None:
    _drop_search(session, artifact.id)
    session.execute("DELETE FROM tag WHERE artifact_id = :id", {"id": artifact.id})
    session.execute("DELETE FROM lineage WHERE child_id = :id", {"id": artifact.id})
    session.execute("DELETE FROM artifact WHERE id = :id", {"id": artifact.id})


def add_lineage(
    session: Writer,
    child: Row,
    parent: Row | None,
    relation: str,
    params: dict[str, Any],
    parent_sha256: str | None = None,
) -> None:
    session.execute(
        "INSERT INTO lineage (child_id, parent_id, parent_sha256, relation, params) "
        "VALUES (:child, :parent, :sha, :relation, :params)",
        {
            "child": child.id,
            "parent": parent.id if parent else None,
            "sha": parent.sha256 if parent else parent_sha256,
            "relation": relation,
            "params": json.dumps(params, sort_keys=True),
        },
    )


def _drop_search(session: Writer, artifact_id: int) -> None:
    if session.has_fts:
        session.execute("DELETE FROM artifact_fts WHERE rowid = :id", {"id": artifact_id})


def refresh_search(session: Writer, artifact: Row) -> None:
    """Rewrite the artifact's full-text entry (SQLite FTS5; other databases search by LIKE)."""
    if not session.has_fts:
        return
    _drop_search(session, artifact.id)
    words = json.loads(artifact.trained_words or "[]")
    session.execute(
        "INSERT INTO artifact_fts(rowid, name, tags, description, trained_words) "
        "VALUES (:id, :name, :tags, :description, :words)",
        {
            "id": artifact.id,
            "name": artifact.name.replace("_", " ").replace("-", " ") + " " + artifact.name,
            "tags": " ".join(_tag_names(session, artifact.id)),
            "description": artifact.description or "",
            "words": " ".join(words),
        },
    )
