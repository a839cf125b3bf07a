"""Commands that read the disk: scan, verify."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import (
    JSON,
    QUIET,
)
from hub.cli.output import (
    emit_json,
    human_size,
    scan_progress,
    spinner,
    status,
)
from hub.cli.state import context

SHOWN = 20  # new locations listed one per line; the rest are counted


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("scan")(scan_command)
    app.command("verify")(verify_command)


def scan_command(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., help="A folder (A1111, ComfyUI or any tree)."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Register the models under a folder where they are (no copy); incremental."""
    from hub.scan import scan

    with scan_progress(not quiet) as on_progress:
        report = scan(context(ctx), folder, progress=on_progress)
    if as_json:
        emit_json(report.as_dict())
        return
    for path, reason in report.skipped:
        status(f"skipped {path}: {reason}")
    for path, primary in report.locations_added[:SHOWN]:
        status(f"new location {path}: same bytes as {primary}")
    if len(report.locations_added) > SHOWN:
        status(f"... and {len(report.locations_added) - SHOWN} more new locations (see --json)")
    status(
        f"{len(report.added)} added, {len(report.updated)} updated, "
        f"{report.unchanged} unchanged, {len(report.locations_added)} locations added, "
        f"{len(report.skipped)} skipped ({human_size(report.hashed_bytes)} hashed"
        + (f", {report.pending} hash pending)" if report.pending else ")")
    )


def verify_command(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Artifacts to check (default: all)."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Re-hash files, report missing or changed ones, register orphaned store files."""
    from hub.verify import verify

    with spinner("verifying", not quiet) as tick:
        report = verify(context(ctx), refs or None, progress=tick)
    if as_json:
        emit_json(report.as_dict())
    else:
        for path in report.missing:
            status(f"missing: {path}")
        for path in report.changed:
            status(f"changed: {path} (bytes differ from the registered hash)")
        for path in report.adopted:
            status(f"registered orphan: {path}")
        for path, reason in report.problems:
            status(f"problem: {path}: {reason}")
        for path in report.pending:
            status(f"hash pending: {path} (run hub scan on its folder)")
        status(f"{len(report.ok)} ok, {len(report.missing)} missing, {len(report.changed)} changed")
    if not report.clean:
        raise typer.Exit(1)
