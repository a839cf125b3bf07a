"""``hub ui``: web UIs that see the library (add, list, rm, link, unlink, yaml)."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import BASE, JSON, KIND, TAGS, base_option, kind_option
from hub.cli.output import emit_json, out, print_table, status
from hub.cli.state import context

ui_app = typer.Typer(
    name="ui",
    help="Web UIs (A1111, Forge, SD.Next, ComfyUI, Fooocus, SwarmUI) that see the library.",
    no_args_is_help=True,
)
DRY_RUN = typer.Option(False, "--dry-run", help="Show what would change; change nothing.")


def register(app: typer.Typer) -> None:
    """Add the ``ui`` command group to ``app``."""
    app.add_typer(ui_app, name="ui")


@ui_app.command("add")
def add_command(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="The UI's install folder."),
    name: str = typer.Option(None, "--name", help="What to call it (default: folder name)."),
    ui_type: str = typer.Option(
        None,
        "--type",
        help="a1111, forge, sdnext, comfyui, fooocus, swarmui or a plugin's (default: detected).",
    ),
    as_json: bool = JSON,
) -> None:
    """Record a UI install; its type is detected from the folder unless given."""
    from hub.uis import add_ui

    ui = add_ui(context(ctx), path, name, ui_type)
    emit_json(ui) if as_json else status(f"added UI '{ui['name']}' ({ui['type']}) at {ui['path']}")


@ui_app.command("list")
def list_command(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List the recorded UIs and how many links sd-hub made in each."""
    from rich.table import Table

    from hub.uis import list_uis

    uis = list_uis(context(ctx))
    if as_json:
        emit_json(uis)
        return
    table = Table(box=None, header_style="bold")
    for col in ("name", "type", "links", "path"):
        table.add_column(col)
    for ui in uis:
        table.add_row(ui["name"], ui["type"], str(ui["links"]), ui["path"])
    print_table(table) if uis else status("no UIs recorded (see `hub ui add`)")


@ui_app.command("rm")
def rm_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The UI's name."),
    keep_links: bool = typer.Option(
        False, "--keep-links", help="Leave sd-hub's links in its folders (forgotten)."
    ),
    as_json: bool = JSON,
) -> None:
    """Forget a UI, removing the links sd-hub made in it first."""
    from hub.uis import remove_ui

    actions = remove_ui(context(ctx), name, keep_links)
    _report(actions, as_json, f"forgot UI '{name}'")


@ui_app.command("link")
def link_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The UI's name."),
    kind: str = KIND,
    base: str = BASE,
    tag: list[str] = TAGS,
    mode: str = typer.Option(
        "auto",
        "--mode",
        help="auto (hard link, else reflink, else symlink), hardlink, "
        "reflink or symlink. Never a copy.",
    ),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Make the selected artifacts (default: every kind the UI has a folder for) appear in
    the UI's own folders; re-running changes only what changed."""
    from hub.uis import Selection, link_ui

    selection = Selection(kind_option(kind), base_option(base), tuple(tag or ()))
    actions = link_ui(context(ctx), name, selection, mode, dry_run)
    _report(actions, as_json, f"UI '{name}'", dry_run)
    if any(a.status in ("clash", "failed") for a in actions):
        raise typer.Exit(1)


@ui_app.command("unlink")
def unlink_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The UI's name."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Remove exactly the links sd-hub made in a UI (never a file it did not make)."""
    from hub.uis import unlink_ui

    _report(unlink_ui(context(ctx), name, dry_run), as_json, f"UI '{name}'", dry_run)


@ui_app.command("yaml")
def yaml_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A ComfyUI install's name."),
    remove: bool = typer.Option(False, "--remove", help="Take sd-hub's section out again."),
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Point a ComfyUI install at sd-hub's store through its extra_model_paths.yaml (a
    section of its own; the user's other sections and comments are kept)."""
    from hub.ui_yaml import write_comfy_yaml

    result = write_comfy_yaml(context(ctx), name, remove, dry_run)
    if as_json:
        emit_json(result)
    else:
        would = "would be " if dry_run and result["status"] != "unchanged" else ""
        status(f"{result['path']}: sd-hub section {would}{result['status']}")


_SHOWN = ("clash", "failed", "kept")  # always printed, each on its own line


def _report(actions: list, as_json: bool, what: str, dry_run: bool = False) -> None:
    from collections import Counter

    if as_json:
        emit_json({"dry_run": dry_run, "actions": [a.as_dict() for a in actions]})
        return
    for a in actions:
        if a.status in _SHOWN or (dry_run and a.status in ("linked", "relinked", "removed")):
            line = f"{a.status}: {a.path}" + (f" ({a.reason})" if a.reason else "")
            out().print(line, markup=False) if a.status not in _SHOWN else status(line)
    counts = Counter(a.status for a in actions)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
    status(f"{what}: {summary}" + (" (dry run: nothing changed)" if dry_run else ""))
