"""Reads and writes of the ``ui`` and ``ui_link`` tables, in plain SQL like the rest."""

from __future__ import annotations

from typing import Any

from hub.registry.db import Reader, Writer
from hub.registry.writes import utcnow

LINK_COLUMNS = (
    "ui_id",
    "artifact_id",
    "sha256",
    "link_path",
    "mode",
    "target_path",
    "device",
    "inode",
    "size",
    "mtime_ns",
)


def all_uis(reader: Reader) -> list[dict[str, Any]]:
    """Every recorded UI with how many links sd-hub has made in it, by name."""
    return reader.rows(
        "SELECT u.id, u.name, u.type, u.path, u.created_at, "
        "(SELECT COUNT(*) FROM ui_link l WHERE l.ui_id = u.id) AS links "
        "FROM ui u ORDER BY u.name"
    )


def find_ui(reader: Reader, name: str) -> dict[str, Any] | None:
    rows = reader.rows("SELECT * FROM ui WHERE name = :name", {"name": name})
    return rows[0] if rows else None


def find_ui_by_path(reader: Reader, path: str) -> dict[str, Any] | None:
    rows = reader.rows("SELECT * FROM ui WHERE path = :path", {"path": path})
    return rows[0] if rows else None


def insert_ui(session: Writer, name: str, ui_type: str, path: str) -> None:
    session.execute(
        "INSERT INTO ui (name, type, path, created_at) VALUES (:name, :type, :path, :now)",
        {"name": name, "type": ui_type, "path": path, "now": utcnow(session)},
    )


def delete_ui(session: Writer, ui_id: int) -> None:
    session.execute("DELETE FROM ui_link WHERE ui_id = :id", {"id": ui_id})
    session.execute("DELETE FROM ui WHERE id = :id", {"id": ui_id})


def links_of(reader: Reader, ui_id: int) -> list[dict[str, Any]]:
    """Every link sd-hub made in a UI, with whether its artifact is still registered."""
    return reader.rows(
        "SELECT l.*, (a.id IS NOT NULL) AS registered FROM ui_link l "
        "LEFT JOIN artifact a ON a.id = l.artifact_id WHERE l.ui_id = :id ORDER BY l.link_path",
        {"id": ui_id},
    )


def links_of_artifact(reader: Reader, artifact_id: int) -> list[dict[str, Any]]:
    """Every link sd-hub made of one artifact, in any UI."""
    return reader.rows(
        "SELECT * FROM ui_link WHERE artifact_id = :id ORDER BY link_path",
        {"id": artifact_id},
    )


def save_link(session: Writer, values: dict[str, Any]) -> None:
    """Record a link (replacing the record of the same path in the same UI)."""
    session.execute(
        "DELETE FROM ui_link WHERE ui_id = :ui_id AND link_path = :link_path",
        {"ui_id": values["ui_id"], "link_path": values["link_path"]},
    )
    names = [*LINK_COLUMNS, "created_at"]
    session.execute(
        f"INSERT INTO ui_link ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})",
        {**{n: values[n] for n in LINK_COLUMNS}, "created_at": utcnow(session)},
    )


def forget_link(session: Writer, ui_id: int, link_path: str) -> None:
    session.execute(
        "DELETE FROM ui_link WHERE ui_id = :ui_id AND link_path = :link_path",
        {"ui_id": ui_id, "link_path": link_path},
    )
