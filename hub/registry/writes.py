"""Writes to the registry, each inside the caller's ``Database.session()`` transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, text
from sqlmodel import Session, select

from hub.registry.tables import Artifact, Lineage, Tag, utcnow


def find_by_hash(session: Session, xxh3_128: str) -> Artifact | None:
    return session.exec(select(Artifact).where(Artifact.xxh3_128 == xxh3_128)).first()


def find_by_path(session: Session, path: str) -> Artifact | None:
    return session.exec(select(Artifact).where(Artifact.path == path)).first()


def get(session: Session, artifact_id: int) -> Artifact:
    artifact = session.get(Artifact, artifact_id)
    assert artifact is not None, artifact_id
    return artifact


def add_tags(
    session: Session, artifact: Artifact, names: list[str], origin: str = "user"
) -> list[str]:
    """Attach tags (lower-cased, stripped); returns the ones that were new."""
    assert artifact.id is not None
    have = set(session.exec(select(Tag.name).where(Tag.artifact_id == artifact.id)).all())
    added = []
    for raw in names:
        name = raw.strip().lower()
        if name and name not in have:
            session.add(Tag(artifact_id=artifact.id, name=name, origin=origin))
            have.add(name)
            added.append(name)
    session.flush()
    refresh_search(session, artifact)
    return added


def remove_tags(session: Session, artifact: Artifact, names: list[str]) -> int:
    wanted = [n.strip().lower() for n in names]
    result = session.exec(  # type: ignore[call-overload]
        delete(Tag).where(Tag.artifact_id == artifact.id, Tag.name.in_(wanted))
    )
    refresh_search(session, artifact)
    return result.rowcount or 0


def insert(session: Session, values: dict[str, Any], tags: list[tuple[str, str]]) -> Artifact:
    """Insert a new artifact row with its tags and search entry."""
    artifact = Artifact(**values)
    session.add(artifact)
    session.flush()
    for origin in {o for _, o in tags}:
        add_tags(session, artifact, [n for n, o in tags if o == origin], origin)
    refresh_search(session, artifact)
    return artifact


def update(session: Session, artifact: Artifact, values: dict[str, Any]) -> Artifact:
    for key, value in values.items():
        setattr(artifact, key, value)
    artifact.updated_at = utcnow()
    session.add(artifact)
    session.flush()
    refresh_search(session, artifact)
    return artifact


def remove(session: Session, artifact: Artifact) -> None:
    _drop_search(session, artifact.id)
    session.exec(delete(Tag).where(Tag.artifact_id == artifact.id))  # type: ignore[call-overload]
    session.exec(  # type: ignore[call-overload]
        delete(Lineage).where(Lineage.child_id == artifact.id)
    )
    session.delete(artifact)
    session.flush()


def add_lineage(
    session: Session,
    child: Artifact,
    parent: Artifact | None,
    relation: str,
    params: dict[str, Any],
    parent_sha256: str | None = None,
) -> None:
    session.add(
        Lineage(
            child_id=child.id,
            parent_id=parent.id if parent else None,
            parent_sha256=parent.sha256 if parent else parent_sha256,
            relation=relation,
            params=json.dumps(params, sort_keys=True),
        )
    )
    session.flush()


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _drop_search(session: Session, artifact_id: int | None) -> None:
    if _is_sqlite(session):
        session.exec(
            text("DELETE FROM artifact_fts WHERE rowid = :id"),  # type: ignore
            params={"id": artifact_id},
        )


def refresh_search(session: Session, artifact: Artifact) -> None:
    """Rewrite the artifact's full-text entry (SQLite FTS5; other databases search by LIKE)."""
    if not _is_sqlite(session):
        return
    _drop_search(session, artifact.id)
    tags = session.exec(select(Tag.name).where(Tag.artifact_id == artifact.id)).all()
    words = json.loads(artifact.trained_words or "[]")
    session.exec(  # type: ignore[call-overload]
        text(
            "INSERT INTO artifact_fts(rowid, name, tags, description, trained_words) "
            "VALUES (:id, :name, :tags, :description, :words)"
        ),
        params={
            "id": artifact.id,
            "name": artifact.name.replace("_", " ").replace("-", " ") + " " + artifact.name,
            "tags": " ".join(tags),
            "description": artifact.description or "",
            "words": " ".join(words),
        },
    )
