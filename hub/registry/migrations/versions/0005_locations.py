"""Locations: one artifact, many places on disk. Every artifact's current path becomes its
first location (device read from the file when it is there, else 0); no other row changes.

Revision ID: 0005_locations
Revises: 0004_postgres
"""

import os

import sqlalchemy as sa
from alembic import op

revision = "0005_locations"
down_revision = "0004_postgres"
branch_labels = None
depends_on = None


def upgrade() -> None:
    location = op.create_table(
        "location",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "artifact_id",
            sa.Integer,
            sa.ForeignKey("artifact.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("path", sa.String, nullable=False, unique=True),
        sa.Column("device", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("root", sa.String),
        sa.Column("created_by_hub", sa.Boolean, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    artifact = sa.table(
        "artifact",
        sa.column("id", sa.Integer),
        sa.column("path", sa.String),
        sa.column("inode", sa.BigInteger),
        sa.column("size", sa.BigInteger),
        sa.column("mtime_ns", sa.BigInteger),
        sa.column("in_store", sa.Boolean),
        sa.column("updated_at", sa.DateTime),
    )
    rows = op.get_bind().execute(sa.select(artifact)).mappings().all()
    if rows:
        op.bulk_insert(
            location,
            [
                {
                    "artifact_id": r["id"],
                    "path": r["path"],
                    "device": _device(r["path"]),
                    "inode": r["inode"],
                    "size": r["size"],
                    "mtime_ns": r["mtime_ns"],
                    "root": None,
                    "created_by_hub": bool(r["in_store"]),
                    "seen_at": r["updated_at"],
                }
                for r in rows
            ],
        )


def _device(path: str) -> int:
    try:
        return os.stat(path).st_dev
    except OSError:
        return 0


def downgrade() -> None:
    op.drop_table("location")
