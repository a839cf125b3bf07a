"""Options and argument parsers the command modules share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    from hub.context import Context

JSON = typer.Option(False, "--json", help="Print JSON on stdout.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
KIND = typer.Option(None, "--kind", help="checkpoint, lora, embedding, hypernetwork, vae.")
BASE = typer.Option(None, "--base", help="sd1, sd2, sdxl, sdxl-refiner, ...")
TAGS = typer.Option(None, "--tag", "-t", help="A tag (repeatable).")


def parse_kind_option(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_kind

    return parse_kind(text)


def parse_base_option(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_base

    return parse_base(text)


def kind_option(text: str | None) -> str | None:
    return str(parse_kind_option(text)) if text else None


def base_option(text: str | None) -> str | None:
    return str(parse_base_option(text)) if text else None


class PluginHelpCommand(TyperCommand):
    """A command whose ``--help`` names what the loaded plugins provide (targets, methods,
    options): :meth:`describe` fills it in just before the help is shown, so running the
    command, or any other, loads nothing for it."""

    def describe(self, hub: Context) -> None:
        """Update option help texts and the epilog from the plugins ``hub`` has loaded."""
        raise NotImplementedError

    def option(self, name: str) -> click.Parameter:
        """The parameter called ``name``."""
        return next(p for p in self.params if p.name == name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from hub.cli.state import State

        state = ctx.find_root().obj
        self.describe(state.ctx if isinstance(state, State) else State().ctx)
        super().format_help(ctx, formatter)
