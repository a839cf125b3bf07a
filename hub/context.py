"""The handle every service works through: settings, the registry database, the store and
the loaded plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from hub import plugins
from hub.config import Settings, load_settings
from hub.plugins.probing import Probe
from hub.registry.db import Database
from hub.registry.store import Store


@dataclass
class Context:
    settings: Settings
    _db: Database | None = field(default=None, repr=False)

    @classmethod
    def load(cls, config: str | None = None, home: str | None = None) -> Context:
        settings = load_settings(config=config, home=home)
        plugins.configure(settings.plugins_disabled)
        return cls(settings)

    @property
    def db(self) -> Database:
        if self._db is None:
            if self.settings.database_url is None:
                self.settings.home.mkdir(parents=True, exist_ok=True)
            self._db = Database(self.settings.db_url)
        return self._db

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.models_dir)

    @cached_property
    def probes(self) -> dict[str, Probe]:
        return {name: reg.value for name, reg in plugins.collect("register_probes").items()}
