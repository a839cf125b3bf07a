"""``hub lock`` and ``hub sync``: a team's exact files in hub.lock, made present anywhere."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import JSON
from hub.cli.output import emit_json, out, status
from hub.cli.state import context


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("lock")(lock_command)
    app.command("sync")(sync_command)


def lock_command(
    ctx: typer.Context,
    every: bool = typer.Option(False, "--all", help="Lock every artifact, not only stacks."),
    out_file: Path = typer.Option(None, "--out", help="Where to write (default: beside hub.toml)."),
    as_json: bool = JSON,
) -> None:
    """Write hub.lock: each stack's files (kind, base, family, SHA-256, size, sources)."""
    from hub import lockfile

    hub_ctx = context(ctx)
    lock = lockfile.build(hub_ctx, every)
    path = out_file or lockfile.default_path(hub_ctx)
    lockfile.write(lock, path)
    if as_json:
        emit_json({"path": str(path), "files": len(lock["files"]), "stacks": lock["stacks"]})
        return
    status(f"locked {len(lock['files'])} files of {len(lock['stacks'])} stacks in {path}")


def sync_command(
    ctx: typer.Context,
    lock_file: Path = typer.Option(None, "--lock", help="The lockfile (default: hub.lock)."),
    as_json: bool = JSON,
) -> None:
    """Install every locked file that is missing (verified by SHA-256); report extras.

    Files already right are left alone; an interrupted sync completes when run again. A
    source that now serves other bytes than the locked ones is refused."""
    from hub import lockfile

    hub_ctx = context(ctx)
    path = lock_file or lockfile.default_path(hub_ctx)
    lock = lockfile.read(path)
    report = lockfile.sync(
        hub_ctx, lock, on_file=lambda f: status(f"checking {f['kind']}:{f['name']}")
    )
    if as_json:
        emit_json(report.as_json())
    else:
        console = out()
        console.print(f"ok: {len(report.ok)}  installed: {len(report.installed)}", markup=False)
        for sha in report.extra:
            console.print(f"extra (not in the lock): {sha}", markup=False)
        for label, items in (("refused", report.refused), ("failed", report.failed)):
            for item in items:
                console.print(f"{label}: {item['sha256'][:10]}: {item['reason']}", markup=False)
    if report.failed:
        raise typer.Exit(1)
