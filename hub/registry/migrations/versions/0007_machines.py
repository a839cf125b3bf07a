"""Machines: a shared registry (PostgreSQL) serves several machines, and a path is a place
only on the machine that has it. Each location names its machine; a path is unique per
machine (two homes laid out alike hold the same paths). Existing locations belong to the
machine that migrates (hub.toml ``machine``, else its host name).

Revision ID: 0007_machines
Revises: 0006_blake3
"""

import sqlalchemy as sa
from alembic import op

from hub.registry.db import default_machine

revision = "0007_machines"
down_revision = "0006_blake3"
branch_labels = None
depends_on = None

# names the unnamed unique constraint of 0005 gets when SQLite's table is reflected
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    machine = op.get_context().config.attributes.get("machine") or default_machine()
    column = sa.Column("machine", sa.String, nullable=False, server_default="")
    if op.get_bind().dialect.name == "sqlite":
        # location has no dependents: copying it drops nothing by cascade
        with op.batch_alter_table("location", recreate="always", naming_convention=_NAMES) as b:
            b.add_column(column)
            b.drop_constraint("uq_location_path", type_="unique")
            b.create_unique_constraint("uq_location_machine_path", ["machine", "path"])
    else:
        op.add_column("location", column)
        op.drop_constraint("location_path_key", "location", type_="unique")
        op.create_unique_constraint("uq_location_machine_path", "location", ["machine", "path"])
    op.execute(sa.text("UPDATE location SET machine = :m").bindparams(m=machine))


def downgrade() -> None:
    with op.batch_alter_table("location") as b:
        b.drop_constraint("uq_location_machine_path", type_="unique")
        b.drop_column("machine")
        b.create_unique_constraint("location_path_key", ["path"])
