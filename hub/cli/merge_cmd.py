"""`hub merge`: bake LoRAs into a checkpoint, merge checkpoints, merge LoRAs."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import (
    JSON,
    QUIET,
)
from hub.cli.output import (
    emit_json,
    spinner,
    status,
)
from hub.cli.state import context
from hub.core.errors import HubError


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("merge")(merge_command)


def merge_command(
    ctx: typer.Context,
    base: str = typer.Argument(None, help="The checkpoint to bake into or merge with."),
    lora: list[str] = typer.Option(
        None, "--lora", help="Bake REF[:W] or REF:TE_W:UNET_W into BASE (repeatable)."
    ),
    with_: list[str] = typer.Option(
        None, "--with", help="Another checkpoint to merge with BASE (repeatable)."
    ),
    method: str = typer.Option(
        "weighted-sum",
        "--method",
        help="weighted-sum, add-difference, ties, dare (with --with).",
    ),
    alpha: float = typer.Option(0.5, "--alpha", help="The multiplier M."),
    density: float = typer.Option(0.2, "--density", help="TIES/DARE: fraction kept."),
    seed: int = typer.Option(0, "--seed", help="DARE's random seed."),
    loras: list[str] = typer.Option(
        None, "--loras", help="Merge LoRAs REF[:W] into one (repeatable; no BASE)."
    ),
    rank: int = typer.Option(
        None, "--rank", help="With --loras: SVD to this rank (default: exact concatenation)."
    ),
    name: str = typer.Option(..., "--name", help="Name of the result."),
    unet_only: bool = typer.Option(False, "--unet-only", help="Leave text encoders as they are."),
    output: Path = typer.Option(None, "--output", help="Also write the result here."),
    allow_family: bool = typer.Option(
        False, "--allow-family", help="No warning for LoRAs of another family than BASE."
    ),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Merge: bake LoRAs into a checkpoint, merge checkpoints, or merge LoRAs."""
    from hub.merge import WeightedRef, bake, merge_checkpoints, merge_loras

    hub = context(ctx)
    with spinner("merging", not quiet):
        if loras:
            result = merge_loras(hub, [WeightedRef.parse(x) for x in loras], name, rank, output)
        elif base and with_:
            result = merge_checkpoints(
                hub, [base, *with_], method, alpha, name, density, seed, output
            )
        elif base and lora:
            result = bake(
                hub,
                base,
                [WeightedRef.parse(x) for x in lora],
                name,
                unet_only,
                output,
                allow_family,
            )
        else:
            raise HubError(
                "nothing to merge",
                hint="BASE --lora REF[:W], BASE --with OTHER, or --loras A B",
            )
    for line in result.reports:
        status(line)
    if as_json:
        emit_json({"status": result.status, **result.artifact})
        return
    a = result.artifact
    status(f"added: {a['kind']}:{a['name']} ({a['base']}) {a['hashes']['autov2']} -> {a['path']}")
