"""Case-insensitive names by a functional index on ``lower(name)`` (both engines), and on
PostgreSQL the full-text index (one ``tsvector`` per artifact under a GIN index; SQLite keeps
its FTS5 table from 0001) and timestamps with a time zone, as the tables declare them.

Revision ID: 0004_postgres
Revises: 0003_family
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_postgres"
down_revision = "0003_family"
branch_labels = None
depends_on = None
# every timestamp column the earlier migrations made
TIMESTAMPS = (
    ("artifact", "created_at"),
    ("artifact", "updated_at"),
    ("ui", "created_at"),
    ("ui_link", "created_at"),
    ("site_answer", "fetched_at"),
)


def upgrade() -> None:
    op.create_index("ix_artifact_name_lower", "artifact", [sa.text("lower(name)")])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TABLE artifact_search ("
            "artifact_id INTEGER PRIMARY KEY REFERENCES artifact(id) ON DELETE CASCADE, "
            "doc TSVECTOR NOT NULL)"
        )
        op.execute("CREATE INDEX ix_artifact_search_doc ON artifact_search USING GIN (doc)")
        for table, column in TIMESTAMPS:
            op.alter_column(
                table,
                column,
                type_=sa.DateTime(timezone=True),
                postgresql_using=f"{column} AT TIME ZONE 'UTC'",
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in TIMESTAMPS:
            op.alter_column(table, column, type_=sa.DateTime(timezone=False))
        op.execute("DROP TABLE artifact_search")
    op.drop_index("ix_artifact_name_lower", "artifact")
