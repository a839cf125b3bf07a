"""The library and the share site: `hub identify`, `hub outdated`, `hub update`."""

from __future__ import annotations

import typer

from hub.cli.options import JSON, QUIET
from hub.cli.output import emit_json, out, spinner, status
from hub.cli.state import context
from hub.core.errors import ExitCode, HubError

OFFLINE = typer.Option(False, "--offline", help="Ask nothing; use what the site said before.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("identify")(identify_command)
    app.command("outdated")(outdated_command)
    app.command("update")(update_command)


def identify_command(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Artifacts to look up (default: all)."),
    refresh: bool = typer.Option(
        False, "--refresh", help="Ask again what the site did not know (else after a week)."
    ),
    offline: bool = OFFLINE,
    sidecars: bool = typer.Option(
        True, "--sidecars/--no-sidecars", help="Write .civitai.info and .json beside files."
    ),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Look local files up on Civitai by SHA-256 (in bulk) and store what it knows."""
    from hub.identify import identify

    with spinner("identify: models", not quiet) as tick:
        report = identify(
            context(ctx),
            refs or None,
            refresh,
            offline,
            progress=lambda done, total: tick(f"{done}/{total}"),
            sidecars=sidecars,
        )
    if as_json:
        emit_json(report.as_dict())
    else:
        for note in report.notes:
            status(f"note: {note}")
        for m in report.matched:
            status(
                f"identified {m['name']}: civitai:{m.get('model_id')}@{m.get('version_id')}"
                f" ({m.get('version')})"
            )
        for s in report.suggestions:
            status(f"maybe {s['name']}: {s['ref']} ({s['model']} {s['version']}): {s['why']}")
        status(
            f"{len(report.matched)} identified, {len(report.unknown)} not on Civitai"
            + (f", {len(report.unasked)} never asked" if report.unasked else "")
        )
    _errors(report.errors)


def _errors(errors: list[str]) -> None:
    """Failed requests: reported, what was gathered kept, exit code 1."""
    for line in errors:
        status(f"error: {line}")
    if errors:
        raise typer.Exit(ExitCode.FAILED)


def outdated_command(ctx: typer.Context, offline: bool = OFFLINE, as_json: bool = JSON) -> None:
    """List installed artifacts with a newer version (same model, base, family and file
    kind, published later, not held)."""
    from hub.updates import outdated

    report = outdated(context(ctx), offline)
    if as_json:
        emit_json({"outdated": report.rows, "errors": report.errors})
    else:
        for r in report.rows:
            out().print(
                f"{r['kind']}:{r['name']} {r['installed']} -> {r['newest']} "
                f"({r['family']}, {r['published']}; hub update {r['name']})",
                markup=False,
            )
        if not report.rows and not report.errors:
            status("everything is up to date")
    _errors(report.errors)


def update_command(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Artifacts to update."),
    everything: bool = typer.Option(False, "--all", help="Update every outdated artifact."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be installed."),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Move [stacks] references to the new version; remove the old one if nothing "
        "else refers to it.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    as_json: bool = JSON,
) -> None:
    """Install newer versions of installed models; the old version stays unless --replace."""
    from hub.updates import update

    def confirm(reason: str) -> bool:
        if not yes:
            raise HubError(f"{reason}: confirmation needed", hint="pass -y")
        return True

    done, report = update(context(ctx), list(refs or []), everything, dry_run, replace, confirm)
    if as_json:
        emit_json(
            {
                "updated": [
                    {
                        "old": u.old,
                        "ref": u.ref,
                        "status": u.status,
                        "new": u.new,
                        "moved_stacks": u.moved,
                        "removed_old": u.removed,
                        "kept_because": u.kept_because,
                    }
                    for u in done
                ],
                "errors": report.errors,
            }
        )
    else:
        for u in done:
            verb = "would install" if u.status == "planned" else u.status
            line = f"{u.old['kind']}:{u.old['name']} {u.old['installed']}: {verb} {u.ref}"
            line += f"; stacks moved: {', '.join(u.moved)}" if u.moved else ""
            line += "; old version removed" if u.removed else ""
            line += f"; old version kept ({u.kept_because})" if u.kept_because else ""
            status(line)
        if not done:
            status("nothing to update")
    _errors(report.errors)
