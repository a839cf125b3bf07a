"""Per-invocation state the root callback builds: the options every command shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from hub.context import Context


@dataclass
class State:
    config: str | None = None
    home: str | None = None
    _ctx: Context | None = field(default=None, repr=False)

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context.load(config=self.config, home=self.home)
        return self._ctx


def context(typer_ctx: typer.Context) -> Context:
    """The hub Context of the running command."""
    return typer_ctx.find_root().obj.ctx
