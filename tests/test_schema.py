"""The declared schema (SQLModel tables) and what the migrations create never drift apart, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.registry.db import HEAD_REVISION, Database
from hub.registry.tables import SCHEMA

pytestmark = pytest.mark.both_engines

FULL_TEXT_TABLES = ("artifact_fts", "artifact_search")  # FTS5's tables; the tsvector table


def _not_full_text(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name.startswith(FULL_TEXT_TABLES))


@pytest.mark.filterwarnings("ignore:.*expression-based index")  # SQLite cannot reflect it
def test_migrations_create_exactly_the_declared_tables(tmp_path, registry_url):
    db = Database(registry_url or f"sqlite:///{tmp_path / 'registry.db'}")
    db.ensure_schema()
    with db.engine.connect() as con:
        ctx = MigrationContext.configure(
            con, opts={"compare_type": True, "include_object": _not_full_text}
        )
        assert compare_metadata(ctx, SCHEMA) == []
        assert ctx.get_current_revision() == HEAD_REVISION
    db.dispose()


def test_names_have_a_lower_name_index(tmp_path, registry_url):
    db = Database(registry_url or f"sqlite:///{tmp_path / 'registry.db'}")
    db.ensure_schema()
    sql = {
        "sqlite": "SELECT sql AS d FROM sqlite_master WHERE name = :n",
        "postgresql": "SELECT indexdef AS d FROM pg_indexes WHERE indexname = :n",
    }[db.dialect]
    with db.reader() as reader:
        [row] = reader.rows(sql, {"n": "ix_artifact_name_lower"})
    db.dispose()
    assert "lowername" in re.sub(r"[()\"\s]|::text", "", row["d"])
