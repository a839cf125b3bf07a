"""The handle every service works through: settings, the registry database, the store and
the loaded plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from hub.core.config import Settings, load_settings
from hub.registry.db import Database, machine_of_home
from hub.registry.store import Store

if TYPE_CHECKING:
    from hub.plugins.converting import Converter
    from hub.plugins.imaging import ImageReader
    from hub.plugins.probing import Probe
    from hub.plugins.sourcing import Source


@dataclass
class Context:
    settings: Settings
    _db: Database | None = field(default=None, repr=False)

    @classmethod
    def load(cls, config: str | None = None, home: str | None = None) -> Context:
        return cls(load_settings(config=config, home=home))

    @property
    def db(self) -> Database:
        if self._db is None:
            if self.settings.database_url is None:
                self.settings.home.mkdir(parents=True, exist_ok=True)
            machine = self.settings.machine or machine_of_home(self.settings.home)
            self._db = Database(self.settings.db_url, machine)
        return self._db

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.models_dir)

    def load_plugins(self) -> None:
        """Load plugins (once per process), honouring the configured disabled list."""
        from hub import plugins

        plugins.configure(self.settings.plugins_disabled)
        plugins.load_plugins()

    @cached_property
    def converters(self) -> dict[str, Converter]:
        from hub import plugins

        self.load_plugins()
        return {name: reg.value for name, reg in plugins.collect("register_converters").items()}

    @cached_property
    def probes(self) -> dict[str, Probe]:
        from hub import plugins

        self.load_plugins()
        return {name: reg.value for name, reg in plugins.collect("register_probes").items()}

    @cached_property
    def image_readers(self) -> dict[str, ImageReader]:
        from hub import plugins

        self.load_plugins()
        return {n: reg.value for n, reg in plugins.collect("register_image_readers").items()}

    @cached_property
    def sources(self) -> dict[str, Source]:
        """Every share site the loaded plugins provide, hub.toml's ``[sources.NAME]`` included."""
        from hub.plugins.sourcing import load_sources

        self.load_plugins()
        return load_sources(self.settings)
