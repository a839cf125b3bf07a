"""BLAKE3 of an artifact's file (InvokeAI names models by ``blake3:<hex>``), computed when an
image asks for it and kept.

Revision ID: 0002_blake3
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_blake3"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifact") as batch:
        batch.add_column(sa.Column("blake3", sa.String))
        batch.create_index("ix_artifact_blake3", ["blake3"])


def downgrade() -> None:
    with op.batch_alter_table("artifact") as batch:
        batch.drop_index("ix_artifact_blake3")
        batch.drop_column("blake3")
