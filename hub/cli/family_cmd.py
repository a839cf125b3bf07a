"""`hub fits MODEL`: the registered add-ons that fit a model, grouped by kind."""

from __future__ import annotations

import typer

from hub.cli.options import JSON
from hub.cli.output import artifact_table, emit_json, status
from hub.cli.state import context


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("fits")(fits_command)


def fits_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A registered checkpoint."),
    as_json: bool = JSON,
) -> None:
    """What in the registry fits MODEL: same base, and a family the model takes."""
    from hub.families import fitting, why
    from hub.registry.queries import resolve_json

    with context(ctx).db.reader() as reader:
        art = resolve_json(reader, model, "checkpoint")
        grouped = fitting(reader, art)
    if as_json:
        emit_json({"model": art["name"], "base": art["base"], "family": art["family"], **grouped})
        return
    status(f"{art['name']}: {art['base']}, family {art['family']} ({why(art)})")
    for kind, rows in sorted(grouped.items()):
        status(f"{kind} ({len(rows)})")
        artifact_table(rows)
