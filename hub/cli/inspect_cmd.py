"""``hub inspect``: what made an image, and which of its files the registry holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hub.cli.output import emit_json, error_line, out
from hub.cli.state import context
from hub.core.errors import HubError

if TYPE_CHECKING:
    from hub.images import Inspection, Resolution
    from hub.plugins.imaging import ImageRecord, Resource

SETTINGS = (
    ("sampler", "Sampler"),
    ("scheduler", "Schedule"),
    ("steps", "Steps"),
    ("cfg", "CFG"),
    ("seed", "Seed"),
    ("clip_skip", "Clip skip"),
)


def _settings(rec: ImageRecord) -> str:
    parts = [
        f"{label} {getattr(rec, attr)}"
        for attr, label in SETTINGS
        if getattr(rec, attr) is not None
    ]
    if rec.width and rec.height:
        parts.append(f"Size {rec.width}x{rec.height}")
    return ", ".join(parts) or "(none)"


def _strength(res: Resource) -> str:
    if res.strength is None:
        return ""
    if res.clip_strength is None or res.clip_strength == res.strength:
        return f" weight {res.strength:g}"
    return f" model {res.strength:g} clip {res.clip_strength:g}"


def _status(how: Resolution) -> str:
    if how.status == "held" and how.artifact:
        art = how.artifact
        text = f"held: {art['kind']}:{art['name']} (by {how.by})"
        return text + (f"; {how.note}" if how.note else "")
    if how.status == "installable" and how.remote:
        return (
            f"installable: hub install {how.install} ({how.remote['source']}: {how.remote['file']})"
        )
    if how.status == "ambiguous":
        return f"ambiguous by {how.by}: " + ", ".join(how.candidates)
    return "unknown"


def _resource_line(res: Resource, how: Resolution) -> str:
    ids = [f"{form} {value}" for form, value in res.hashes.items()]
    if res.version_id is not None:
        ids.append(f"version {res.version_id}")
    named = res.name or "(unnamed)"
    given = f" [{', '.join(ids)}]" if ids else ""
    return f"  {res.kind:<12} {named}{_strength(res)}{given}: {_status(how)}"


def _extra(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def print_inspection(found: Inspection) -> None:
    """The human-readable report of one image."""
    rec = found.record
    if rec is None:
        why = f" ({'; '.join(found.notes)})" if found.notes else ""
        out().print(f"{found.path}: no generation metadata{why}", markup=False)
        return
    version = f" {rec.version}" if rec.version else ""
    lines = [f"{found.path}: {rec.tool}{version} ({found.container}, read by {rec.reader})"]
    lines.append(f"  prompt:   {rec.prompt if rec.prompt is not None else '(none)'}")
    if rec.negative:
        lines.append(f"  negative: {rec.negative}")
    lines.append(f"  settings: {_settings(rec)}")
    from hub.plugins.imaging import RESOURCE_KINDS

    pairs = sorted(
        zip(rec.resources, found.resolutions, strict=True),
        key=lambda pair: RESOURCE_KINDS.index(pair[0].kind),
    )
    lines += [_resource_line(r, h) for r, h in pairs]
    if rec.extra:
        lines.append("  extra:    " + "; ".join(f"{k}: {_extra(v)}" for k, v in rec.extra.items()))
    lines += [f"  note: {n}" for n in [*found.notes, *rec.notes]]
    out().print("\n".join(lines), markup=False)


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect_command(
        ctx: typer.Context,
        images: list[Path] = typer.Argument(..., help="PNG, JPEG or WebP images."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
        stack: bool = typer.Option(
            False, "--stack", help="Print each image's stack as a [stacks.NAME] table."
        ),
        offline: bool = typer.Option(
            False, "--offline", help="Do not ask the share site about files not held."
        ),
    ) -> None:
        """Show what made an image: tool, prompt, settings, and each file it names, with
        whether the registry holds it."""
        from hub.images import SiteLookup, inspect_image, stack_table

        hub_ctx = context(ctx)
        site = None if offline else SiteLookup(hub_ctx)
        reports: list[dict[str, Any]] = []
        failed = False
        for path in images:
            try:
                found = inspect_image(hub_ctx, path)
                if site is not None:
                    site.complete(found)
                table = stack_table(found, path.stem) if stack else None
            except HubError as exc:
                failed = True
                error_line(exc.message, exc.hint)
                reports.append({"path": str(path), "error": exc.message})
                continue
            if table is not None:
                out().print(table + "\n", markup=False)
            elif as_json:
                reports.append(found.as_dict())
            else:
                print_inspection(found)
        if as_json and not stack:
            emit_json(reports)
        if failed:
            raise typer.Exit(1)
