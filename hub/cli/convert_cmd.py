"""`hub convert`: formats and dtypes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from hub.cli.options import (
    JSON,
    QUIET,
    PluginHelpCommand,
)
from hub.cli.output import (
    emit_json,
    spinner,
    status,
)
from hub.cli.state import context

if TYPE_CHECKING:
    from hub.context import Context


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("convert", cls=ConvertCommand)(convert_command)


class ConvertCommand(PluginHelpCommand):
    """``hub convert``, whose ``--help`` lists the targets the loaded converters declare."""

    def describe(self, hub: Context) -> None:
        from hub.plugins.converting import targets

        names = ", ".join(sorted(targets(hub.converters)))
        self.option("to").help = f"The target format, one of: {names}."


def convert_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The artifact to convert."),
    to: str = typer.Option(
        None,
        "--to",
        help="The target format (`hub convert --help` lists those the converters declare).",
    ),
    dtype: str = typer.Option(
        None, "--dtype", help="fp32, fp16, bf16 or fp8 (e4m3; fp8_e5m2 too)."
    ),
    prune: bool = typer.Option(False, "--prune", help="Drop EMA and unused keys."),
    name: str = typer.Option(None, "--name", help="Name of the result."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Convert an artifact's format or dtype; the result is registered with lineage."""
    from hub.convert import convert

    with spinner("converting", not quiet):
        result = convert(context(ctx), ref, to, dtype, prune, name)
    if as_json:
        emit_json({"status": result.status, "steps": result.steps, **result.artifact})
        return
    a = result.artifact
    verb = "added" if result.status == "added" else "already registered"
    status(
        f"{verb}: {a['kind']}:{a['name']} ({a['format']}, {' -> '.join(result.steps)}) "
        f"{a['hashes']['autov2']}"
    )
