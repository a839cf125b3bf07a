"""The declared schema (SQLModel tables) and what the migrations create never drift apart."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.registry.db import Database
from hub.registry.tables import SCHEMA


def _not_fts(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name.startswith("artifact_fts"))  # FTS5's own tables


def test_migrations_create_exactly_the_declared_tables(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    db.ensure_schema()
    with db.engine.connect() as con:
        ctx = MigrationContext.configure(
            con, opts={"compare_type": True, "include_object": _not_fts}
        )
        assert compare_metadata(ctx, SCHEMA) == []
    db.dispose()
