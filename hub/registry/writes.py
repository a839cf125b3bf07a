"""Writes to the registry, each inside the caller's ``Database.session()`` transaction.

Plain SQL with ``:name`` parameters through :class:`hub.registry.db.Writer`, like the reads:
registering a file never imports an ORM (a third of a second before anything happens). The
schema is the migrations' (see migrations/); the defaults below are the columns' defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.registry.db import Writer
from hub.registry.queries import search_text

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
    "family_locked": False,
    "family_evidence": None,
}


class Row(dict[str, Any]):
    """An artifact row: a dict of its columns, also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def utcnow(session: Writer) -> datetime | str:
    """Now in UTC, as the database stores it (SQLite: text with microseconds; PostgreSQL: a
    ``timestamp with time zone``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if session.dialect == "sqlite" else now


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


def insert(
    session: Writer,
    values: dict[str, Any],
    tags: list[tuple[str, str]],
    place: Place | None = None,
    root: str | None = None,
) -> Row:
    """Insert a new artifact row with its tags, search entry and first location (``place``,
    else its path as ``stat`` sees it now; ``root``: the scanned folder it was found in)."""
    now = utcnow(session)
    columns = ARTIFACT_DEFAULTS | {"created_at": now, "updated_at": now} | values
    names = list(columns)
    [row] = session.rows(
        f"INSERT INTO artifact ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)}) RETURNING id",
        columns,
    )
    artifact = get(session, row["id"])
    put_location(
        session,
        artifact.id,
        place or Place.of(artifact.path),
        root=root,
        created_by_hub=bool(artifact.in_store),
    )
    for origin in {o for _, o in tags}:
        add_tags(session, artifact, [n for n, o in tags if o == origin], origin)
    refresh_search(session, artifact)
    return artifact


def insert_many(
    session: Writer, rows: list[tuple[dict[str, Any], list[tuple[str, str]], Place]], root: str
) -> list[int]:
    """:func:`insert` of many new artifacts found under the scanned folder ``root`` (each:
    column values, tags, its one location), with a few statements for all of them rather than
    several per row; returns their ids, in order. Tags keep their first origin."""
    if not rows:
        return []
    now = utcnow(session)
    names = list(ARTIFACT_DEFAULTS | {"created_at": now, "updated_at": now} | rows[0][0])
    sql = (
        f"INSERT INTO artifact ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)}) RETURNING id"
    )
    ids, locations, tag_rows, entries = [], [], [], []
    for values, tags, place in rows:
        columns = ARTIFACT_DEFAULTS | {"created_at": now, "updated_at": now} | values
        [row] = session.rows(sql, columns)
        ids.append(row["id"])
        locations.append(
            _location_values(session, row["id"], place, now) | {"root": root, "hub": False}
        )
        unique: dict[str, str] = {}
        for raw, origin in tags:
            unique.setdefault(raw.strip().lower(), origin)
        unique.pop("", None)
        tag_rows += [{"id": row["id"], "name": n, "origin": o} for n, o in unique.items()]
        entries.append(_search_fields(columns | {"id": row["id"]}, list(unique)))
    session.execute_many(
        "INSERT INTO location (artifact_id, path, machine, device, inode, size, mtime_ns, root, "
        "created_by_hub, seen_at) VALUES (:artifact_id, :path, :machine, :device, :inode, :size, "
        ":mtime_ns, :root, :hub, :seen_at) ON CONFLICT (machine, path) DO UPDATE SET "
        "artifact_id = excluded.artifact_id, device = excluded.device, inode = excluded.inode, "
        "size = excluded.size, mtime_ns = excluded.mtime_ns, seen_at = excluded.seen_at, "
        "root = excluded.root",
        locations,
    )
    session.execute_many(
        "INSERT INTO tag (artifact_id, name, origin) VALUES (:id, :name, :origin)", tag_rows
    )
    _insert_search(session, entries)
    return ids


def update(session: Writer, artifact: Row, values: dict[str, Any], search: bool = True) -> Row:
    """Set columns of an artifact (and its ``updated_at``); the row is updated in place.
    ``search=False``: the columns set are none the full-text entry holds (hashes, stat)."""
    values = {**values, "updated_at": utcnow(session)}
    session.execute(
        f"UPDATE artifact SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = :id_",
        {**values, "id_": artifact.id},
    )
    artifact.update(values)
    if search:
        refresh_search(session, artifact)
    return artifact


def remove(session: Writer, artifact: Row) -> None:
    _drop_search(session, artifact.id)
    session.execute("DELETE FROM location WHERE artifact_id = :id", {"id": artifact.id})
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
    if session.dialect == "sqlite":
        session.execute("DELETE FROM artifact_fts WHERE rowid = :id", {"id": artifact_id})
    else:
        session.execute("DELETE FROM artifact_search WHERE artifact_id = :id", {"id": artifact_id})


def refresh_search(session: Writer, artifact: Row) -> None:
    """Rewrite the artifact's full-text entry: FTS5 on SQLite, a ``tsvector`` on PostgreSQL
    (same words, diacritics removed as FTS5's tokenizer does)."""
    _drop_search(session, artifact.id)
    _insert_search(session, [_search_fields(artifact, _tag_names(session, artifact.id))])


def _search_fields(artifact: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """The full-text entry of an artifact row (``id`` set) with these tags."""
    name = artifact["name"]
    return {
        "id": artifact["id"],
        "name": name.replace("_", " ").replace("-", " ") + " " + name,
        "tags": " ".join(tags),
        "description": artifact.get("description") or "",
        "words": " ".join(json.loads(artifact.get("trained_words") or "[]")),
    }


def _insert_search(session: Writer, entries: list[dict[str, Any]]) -> None:
    """Add full-text entries (:func:`_search_fields`), in one statement."""
    if session.dialect == "sqlite":
        session.execute_many(
            "INSERT INTO artifact_fts(rowid, name, tags, description, trained_words) "
            "VALUES (:id, :name, :tags, :description, :words)",
            entries,
        )
        return
    docs = [
        {
            "id": e["id"],
            "doc": search_text(" ".join(e[k] for k in ("name", "tags", "description", "words"))),
        }
        for e in entries
    ]
    session.execute_many(
        "INSERT INTO artifact_search (artifact_id, doc) VALUES (:id, to_tsvector('simple', :doc))",
        docs,
    )


# -- locations: the places on disk where an artifact's bytes are --------------------------------


@dataclass(frozen=True)
class Place:
    """A path and what ``stat`` said of it (zeros for a path that cannot be read)."""

    path: str
    device: int = 0
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0

    @classmethod
    def of(cls, path: str, st: os.stat_result | None = None) -> Place:
        """The place of ``path``, from ``st`` or a ``stat`` now."""
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                return cls(path)
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _location_values(session: Writer, artifact_id: int, place: Place, now: Any) -> dict[str, Any]:
    return {
        "artifact_id": artifact_id,
        "path": place.path,
        "machine": session.machine,
        "device": place.device,
        "inode": place.inode,
        "size": place.size,
        "mtime_ns": place.mtime_ns,
        "seen_at": now,
    }


def put_location(
    session: Writer,
    artifact_id: int,
    place: Place,
    root: str | None = None,
    created_by_hub: bool = False,
) -> None:
    """Record that ``place.path`` on this machine holds the artifact's bytes (moving the path
    over from another artifact if it was recorded there)."""
    values = _location_values(session, artifact_id, place, utcnow(session))
    changed = session.execute(
        "UPDATE location SET artifact_id = :artifact_id, device = :device, inode = :inode, "
        "size = :size, mtime_ns = :mtime_ns, seen_at = :seen_at"
        + (", root = :root" if root is not None else "")
        + " WHERE machine = :machine AND path = :path",
        values | {"root": root},
    )
    if not changed:
        session.execute(
            "INSERT INTO location (artifact_id, path, machine, device, inode, size, mtime_ns, "
            "root, created_by_hub, seen_at) VALUES (:artifact_id, :path, :machine, :device, "
            ":inode, :size, :mtime_ns, :root, :hub, :seen_at)",
            values | {"root": root, "hub": created_by_hub},
        )


def location_paths(session: Writer, artifact_id: int) -> list[str]:
    """The paths of an artifact's locations on this machine, oldest first."""
    rows = session.rows(
        "SELECT path FROM location WHERE artifact_id = :id AND machine = :machine ORDER BY id",
        {"id": artifact_id, "machine": session.machine},
    )
    return [r["path"] for r in rows]


def drop_location(session: Writer, artifact: Row, path: str) -> bool:
    """Forget one location of ``artifact`` on this machine; when it was the primary path,
    another location becomes primary. Returns False when it was the last one anywhere
    (nothing is changed then: the caller removes the artifact or keeps the location)."""
    others = session.rows(
        "SELECT path, machine FROM location WHERE artifact_id = :id "
        "AND NOT (machine = :machine AND path = :path) ORDER BY machine <> :machine, id",
        {"id": artifact.id, "machine": session.machine, "path": path},
    )
    if not others:
        return False
    session.execute(
        "DELETE FROM location WHERE machine = :machine AND path = :path",
        {"machine": session.machine, "path": path},
    )
    if artifact.path == path:
        update(session, artifact, {"path": others[0]["path"]})
    return True


def merge_into(session: Writer, duplicate: Row, survivor: Row) -> None:
    """Fold ``duplicate`` (the same bytes as ``survivor``) into ``survivor``: its locations
    and tags move over, then its row goes."""
    session.execute(
        "UPDATE location SET artifact_id = :to WHERE artifact_id = :from",
        {"to": survivor.id, "from": duplicate.id},
    )
    rows = session.rows(
        "SELECT name, origin FROM tag WHERE artifact_id = :id", {"id": duplicate.id}
    )
    for origin in sorted({r["origin"] for r in rows}):
        add_tags(session, survivor, [r["name"] for r in rows if r["origin"] == origin], origin)
    remove(session, duplicate)
