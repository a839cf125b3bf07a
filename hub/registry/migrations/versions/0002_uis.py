"""Web UIs sd-hub links into (``ui``), and every link it made (``ui_link``).

Revision ID: 0002_uis
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_uis"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ui_link",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "ui_id",
            sa.Integer,
            sa.ForeignKey("ui.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "artifact_id",
            sa.Integer,
            sa.ForeignKey("artifact.id", ondelete="SET NULL"),
            index=True,
        ),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("link_path", sa.String, nullable=False),
        sa.Column("mode", sa.String, nullable=False),
        sa.Column("target_path", sa.String, nullable=False),
        sa.Column("device", sa.BigInteger, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("ui_id", "link_path"),
    )


def downgrade() -> None:
    op.drop_table("ui_link")
    op.drop_table("ui")
