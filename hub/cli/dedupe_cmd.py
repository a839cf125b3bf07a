"""``hub dedupe``: identical files become hard links to one copy."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import JSON, QUIET
from hub.cli.output import emit_json, human_size, open_progress, status
from hub.cli.state import context


def register(app: typer.Typer) -> None:
    """Add this module's command to ``app``."""
    app.command("dedupe")(dedupe_command)


def dedupe_command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        None, help="Files or folders (default: every registered file)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report; change nothing."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Hard-link identical files (same SHA-256, then byte for byte) on one file system to
    one copy; each replacement atomic; files changed since hashed are skipped."""
    from hub.dedupe import dedupe_library

    with open_progress("hashing", not quiet) as (set_total, advance):
        report = dedupe_library(
            context(ctx),
            list(paths or []),
            dry_run,
            on_hashed=lambda _path, n: advance(n),
            on_total=set_total,
        )
    if as_json:
        emit_json(report.as_dict())
        return
    verb = "would replace" if dry_run else "replaced"
    for item in report.replaced:
        status(f"{verb} {item['path']} with a link to {item['kept']}")
    for item in report.skipped:
        status(f"skipped {item['path']}: {item['reason']}")
    freed = "would free" if dry_run else "freed"
    status(
        f"{report.files} files, {report.groups} sets of duplicates, {len(report.replaced)} "
        f"{verb}, {len(report.skipped)} skipped; {freed} {human_size(report.reclaimed)}"
    )
