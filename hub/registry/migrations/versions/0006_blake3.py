"""BLAKE3 of an artifact's file (InvokeAI names models by ``blake3:<hex>``), computed when an
image asks for it and kept.

Revision ID: 0006_blake3
Revises: 0005_locations
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_blake3"
down_revision = "0005_locations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # in place (no batch copy of artifact: with foreign keys on, dropping the old table would
    # delete tags and lineage by cascade)
    op.add_column("artifact", sa.Column("blake3", sa.String))
    op.create_index("ix_artifact_blake3", "artifact", ["blake3"])


def downgrade() -> None:
    op.drop_index("ix_artifact_blake3", "artifact")
    op.drop_column("artifact", "blake3")
