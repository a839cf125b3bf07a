"""The registry: tables, engine and migrations, read queries, writes, and the file store.

Importing this package is cheap; SQLModel loads only with the modules that need it.
"""
