"""Alembic environment: runs on the connection hub.registry.db hands over."""

from alembic import context

from hub.registry.tables import SCHEMA

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True, target_metadata=SCHEMA)
with context.begin_transaction():
    context.run_migrations()
