"""A third-party sd-hub plugin package for the tests: each module is one plugin, named by an
entry point in the ``hub`` group (see ../pyproject.toml)."""
