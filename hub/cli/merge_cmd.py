"""`hub merge`: bake LoRAs into a checkpoint, merge checkpoints, merge LoRAs."""

from __future__ import annotations

from pathlib import Path
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
from hub.core.errors import HubError

if TYPE_CHECKING:
    from hub.context import Context


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("merge", cls=MergeCommand)(merge_command)


class MergeCommand(PluginHelpCommand):
    """``hub merge``, whose ``--help`` lists the loaded merge methods and their options."""

    def describe(self, hub: Context) -> None:
        from hub.merge import merge_methods

        methods = merge_methods(hub)
        self.option("method").help = "With --with: " + ", ".join(methods) + " (see below)."
        lines = []
        for m in methods.values():
            lo, hi = m.inputs
            count = f"{lo}" if lo == hi else f"{lo} to {hi}"
            options = "; ".join(o.describe() for o in m.options) or "no options"
            lines.append(f"{m.name} ({count} checkpoints): {options}")
        self.epilog = "Merge methods and their --option KEY=VALUE:\n\n" + "\n\n".join(lines)


def method_options(density: float | None, seed: int | None, pairs: list[str]) -> dict[str, str]:
    """The merge method's options as given: ``--density``/``--seed`` are shorthands for
    ``--option density=X``/``seed=N`` (an explicit ``--option`` wins)."""
    from hub.plugins.merging import parse_option_pairs

    given = {"density": density, "seed": seed}
    shorthands = {k: str(v) for k, v in given.items() if v is not None}
    return shorthands | parse_option_pairs(pairs)


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
        help="The merge method, with --with (`hub merge --help` lists them).",
    ),
    alpha: float = typer.Option(0.5, "--alpha", help="The multiplier M."),
    option: list[str] = typer.Option(
        None, "--option", help="KEY=VALUE: an option of the merge method (repeatable)."
    ),
    density: float = typer.Option(None, "--density", help="Shorthand for --option density=X."),
    seed: int = typer.Option(None, "--seed", help="Shorthand for --option seed=N."),
    loras: list[str] = typer.Option(
        None, "--loras", help="Merge LoRAs REF[:W] into one (repeatable; no BASE)."
    ),
    rank: int = typer.Option(
        None, "--rank", help="With --loras: SVD to this rank (default: exact concatenation)."
    ),
    name: str = typer.Option(..., "--name", help="Name of the result."),
    unet_only: bool = typer.Option(False, "--unet-only", help="Leave text encoders as they are."),
    output: Path = typer.Option(None, "--output", help="Also write the result here."),
    dtype: str = typer.Option(
        None, "--dtype", help="Store the result in fp32, fp16, bf16 or fp8 (default: BASE's)."
    ),
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
            options = method_options(density, seed, option or [])
            result = merge_checkpoints(
                hub, [base, *with_], method, alpha, name, options, output, dtype
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
                dtype,
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
