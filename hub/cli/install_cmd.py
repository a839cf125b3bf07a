"""Commands that bring files in: import, install."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import (
    BASE,
    JSON,
    KIND,
    QUIET,
    TAGS,
    parse_base_option,
    parse_kind_option,
)
from hub.cli.output import (
    byte_progress,
    emit_json,
    error_line,
    human_size,
    out,
    status,
)
from hub.cli.state import context
from hub.core.errors import HubError


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("import")(import_command)
    app.command("install")(install_command)


def import_command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files or diffusers folders."),
    kind: str = KIND,
    base: str = BASE,
    name: str = typer.Option(None, "--name", help="Name to register (one path only)."),
    tag: list[str] = TAGS,
    keep_pickle: bool = typer.Option(
        False,
        "--keep-pickle",
        help="Keep a pickled original beside its safetensors conversion.",
    ),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Copy files into the store and register them (the same bytes twice are one entry).

    Pickled files (.ckpt, .pt, .bin) are read safely and converted to safetensors."""
    from hub.importing import import_path
    from hub.register import Overrides

    if name and len(paths) > 1:
        raise HubError("--name applies to one path only")
    overrides = Overrides(
        kind=parse_kind_option(kind) if kind else None,
        base=parse_base_option(base) if base else None,
        name=name,
        tags=tuple(tag or ()),
    )
    hub = context(ctx)
    results, failures = [], 0
    for path in paths:
        size = path.stat().st_size if path.is_file() else 0
        try:
            with byte_progress(f"import {path.name}", size, not quiet) as advance:
                result = import_path(
                    hub, path, overrides, progress=advance, keep_pickle=keep_pickle
                )
        except HubError as exc:
            if len(paths) == 1:
                raise
            error_line(exc.message, exc.hint)
            failures += 1
            continue
        results.append({"status": result.status, "source": str(path), **result.artifact})
        if not as_json:
            a = result.artifact
            verb = {"added": "added", "located": "added here (registered by another machine)"}
            verb = verb.get(result.status, "already registered")
            status(
                f"{verb}: {a['kind']}:{a['name']} ({a['base']}, "
                f"{a['algo'] or a['layout'] or a['format']}) {a['hashes']['autov2']}"
            )
    if as_json:
        emit_json(results)
    if failures:
        raise typer.Exit(1)


def install_command(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ...,
        help="lora:NAME[@VERSION], checkpoint:NAME, "
        "embedding:NAME, hypernetwork:NAME, vae:NAME, dreambooth:NAME, "
        "civitai:ID[@VERSION_ID], sha256:HASH, a Civitai URL, "
        "hf:OWNER/REPO/PATH[@REV], or an https URL.",
    ),
    pick: int = typer.Option(None, "--pick", help="Choose the Nth of ambiguous matches."),
    fp: str = typer.Option(None, "--fp", help="File precision: fp16, fp32, bf16..."),
    size: str = typer.Option(None, "--size", help="File size variant: pruned or full."),
    file_type: str = typer.Option(
        None, "--file-type", help="A file other than the weights: VAE, Text Encoder..."
    ),
    name: str = typer.Option(None, "--name", help="Name to register."),
    tag: list[str] = TAGS,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be fetched."),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask (large, pickled, or unverifiable)."
    ),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Install from a share site: verified, resumable, with the site's metadata."""
    import sys

    from hub.cli.output import open_progress
    from hub.install import install
    from hub.plugins.sourcing import Choice

    def confirm(reason: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise HubError(f"{reason}: confirmation needed", hint="pass -y to install it")
        return typer.confirm(f"{reason}. Install?", err=True)

    with open_progress(f"install {ref}", not quiet) as (set_total, advance):
        result = install(
            context(ctx),
            ref,
            Choice(pick, fp, size, file_type),
            name,
            tuple(tag or ()),
            dry_run,
            confirm,
            advance,
            lambda r: set_total(r.size),
        )
    for note in result.notes:
        status(f"note: {note}")
    if as_json:
        emit_json(
            {
                "status": result.status,
                "remote": result.remote,
                "artifact": result.artifact,
                "notes": result.notes,
            }
        )
        return
    r = result.remote
    if result.status == "planned":
        out().print(
            f"would fetch {r['file']} ({human_size(r['size'] or 0)}) from "
            f"{r['source']}: {r['url']}\n  {r['kind']}:{r['name']} version "
            f"{r['version']} base {r['base']} ({r['family']}) sha256 {r['sha256']}",
            markup=False,
        )
        return
    a = result.artifact or {}
    verb = {"added": "installed", "located": "installed here (a team artifact)"}.get(
        result.status, "already installed"
    )
    status(
        f"{verb}: {a.get('kind')}:{a.get('name')} ({a.get('base')}, "
        f"{a.get('algo') or a.get('layout')}) {a.get('hashes', {}).get('autov2')} -> "
        f"{a.get('path')}"
    )
