"""The initial schema: artifacts, tags, lineage, and the FTS5 index on SQLite.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String, nullable=False, index=True),
        sa.Column("name", sa.String, nullable=False, index=True),
        sa.Column("version", sa.String),
        sa.Column("base", sa.String, nullable=False, index=True),
        sa.Column("family", sa.String),
        sa.Column("format", sa.String, nullable=False),
        sa.Column("layout", sa.String),
        sa.Column("algo", sa.String),
        sa.Column("variant", sa.String),
        sa.Column("prediction", sa.String),
        sa.Column("path", sa.String, nullable=False, unique=True),
        sa.Column("in_store", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("xxh3_128", sa.String, nullable=False, unique=True),
        sa.Column("sha256", sa.String, nullable=False, index=True),
        sa.Column("autov1", sa.String),
        sa.Column("autov3", sa.String, index=True),
        sa.Column("hash_status", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("source_ref", sa.Text),
        sa.Column("trained_words", sa.Text, nullable=False),
        sa.Column("preferred_weight", sa.Float),
        sa.Column("description", sa.Text),
        sa.Column("preview", sa.String),
        sa.Column("header_metadata", sa.Text),
        sa.Column("site_json", sa.Text),
        sa.Column("probe_json", sa.Text),
        sa.Column("kind_locked", sa.Boolean, nullable=False),
        sa.Column("base_locked", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "tag",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "artifact_id",
            sa.Integer,
            sa.ForeignKey("artifact.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String, nullable=False, index=True),
        sa.Column("origin", sa.String, nullable=False),
        sa.UniqueConstraint("artifact_id", "name"),
    )
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "child_id",
            sa.Integer,
            sa.ForeignKey("artifact.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "parent_id", sa.Integer, sa.ForeignKey("artifact.id", ondelete="SET NULL"), index=True
        ),
        sa.Column("parent_sha256", sa.String),
        sa.Column("relation", sa.String, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE artifact_fts USING fts5("
            "name, tags, description, trained_words, tokenize='unicode61 remove_diacritics 2')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE artifact_fts")
    op.drop_table("lineage")
    op.drop_table("tag")
    op.drop_table("artifact")
