"""``hub export`` and ``hub import-registry``: a registry's metadata, kept and merged."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import JSON
from hub.cli.output import emit_json, status
from hub.cli.state import context


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("export")(export_command)
    app.command("import-registry")(import_registry_command)


def export_command(
    ctx: typer.Context,
    out_file: Path = typer.Option(None, "--out", help="Write here instead of stdout."),
    as_json: bool = typer.Option(
        False, "--json", help="With --out: print the path and count as JSON."
    ),
) -> None:
    """Write the registry's metadata (artifacts, tags, lineage, share-site JSON) as JSON
    (on stdout without --out)."""
    from hub import registry_export

    data = registry_export.export(context(ctx))
    if out_file is None:
        emit_json(data)
        return
    registry_export.write(data, out_file)
    if as_json:
        emit_json({"path": str(out_file), "artifacts": len(data["artifacts"])})
        return
    status(f"exported {len(data['artifacts'])} artifacts to {out_file}")


def import_registry_command(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A file written by `hub export`."),
    as_json: bool = JSON,
) -> None:
    """Merge an export into this registry by content hash (never duplicating)."""
    from hub import registry_export

    report = registry_export.merge(context(ctx), registry_export.read(file))
    if as_json:
        emit_json(report.__dict__)
        return
    status(f"added {len(report.added)}, merged {len(report.merged)}, skipped {len(report.skipped)}")
    for sha, reason in report.skipped:
        status(f"skipped {sha[:10]}: {reason}")
