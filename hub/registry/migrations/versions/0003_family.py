"""Families: the user's lock and the evidence behind each artifact's family; the share
site's answers kept locally (version and model JSON, cached "not found").

Revision ID: 0003_family
Revises: 0002_uis
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_family"
down_revision = "0002_uis"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN: a batch (copy-and-move) of ``artifact`` on SQLite would drop the old
    # table, and with foreign keys on that deletes every tag and lineage row by cascade
    op.add_column(
        "artifact",
        sa.Column("family_locked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("artifact", sa.Column("family_evidence", sa.Text))
    op.create_table(
        "site_answer",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("site", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("found", sa.Boolean, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("site", "key"),
    )


def downgrade() -> None:
    op.drop_table("site_answer")
    op.drop_column("artifact", "family_evidence")
    op.drop_column("artifact", "family_locked")
