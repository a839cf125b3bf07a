"""Commands on the registry: list, search, show, tag, untag, set, rm."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.options import (
    BASE,
    JSON,
    KIND,
    TAGS,
    base_option,
    kind_option,
    parse_base_option,
    parse_kind_option,
)
from hub.cli.output import (
    artifact_table,
    emit_json,
    emit_json_text,
    human_size,
    out,
    print_table,
    status,
)
from hub.cli.state import context
from hub.core.errors import HubError


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("list")(list_command)
    app.command("search")(search_command)
    app.command("show")(show_command)
    app.command("tag")(tag_command)
    app.command("untag")(untag_command)
    app.command("set")(set_command)
    app.command("rm")(rm_command)


FITS = typer.Option(None, "--fits", help="Only add-ons that fit this model (base and family).")
FAMILY = typer.Option(None, "--family", help="Only this family (Pony, Illustrious, SDXL 1.0...).")


def _fit_filters(reader, fits, family, base):  # noqa: ANN001, ANN202
    """(base, Filters) for --fits MODEL and --family F."""
    from hub.registry.queries import Filters, resolve_json

    if not fits and not family:  # the plain listing loads no family tables (start-up time)
        return base_option(base), Filters()
    from hub.families import fit_filters, normalize_label

    family = normalize_label(family) if family else None
    if not fits:
        return base_option(base), Filters(families=(family,))
    return fit_filters(resolve_json(reader, fits, "checkpoint"), family)


def list_command(
    ctx: typer.Context,
    kind: str = KIND,
    base: str = BASE,
    tag: list[str] = TAGS,
    fits: str = FITS,
    family: str = FAMILY,
    as_json: bool = JSON,
) -> None:
    """List registered artifacts."""
    from hub.registry.queries import list_artifacts, list_json

    with context(ctx).db.reader() as reader:
        base, more = _fit_filters(reader, fits, family, base)
        if as_json:
            emit_json_text(list_json(reader, kind_option(kind), base, tag, more))
            return
        rows = list_artifacts(reader, kind_option(kind), base, tag, more)
    artifact_table(rows)


def search_command(
    ctx: typer.Context,
    query: str = typer.Argument(
        "", help="Words to find in names, tags, descriptions, trained words."
    ),
    kind: str = KIND,
    base: str = BASE,
    tag: list[str] = TAGS,
    limit: int = typer.Option(50, "--limit", help="At most this many results."),
    offset: int = typer.Option(
        0, "--offset", min=0, help="Skip the first N results (the next page: N + limit)."
    ),
    remote: bool = typer.Option(
        False, "--remote", help="Search the share sites instead (every source that can search)."
    ),
    source: str = typer.Option(None, "--source", help="With --remote: search this source only."),
    cursor: str = typer.Option(None, "--cursor", help="Next page of a remote search."),
    fits: str = FITS,
    family: str = FAMILY,
    as_json: bool = JSON,
) -> None:
    """Search the registry (full text, with kind/base/tag filters), or the share sites."""
    from hub.registry.queries import search

    if remote or source:
        _search_remote(context(ctx), query, kind, base, tag, limit, cursor, source, as_json)
        return
    with context(ctx).db.reader() as reader:
        base, more = _fit_filters(reader, fits, family, base)
        rows = search(reader, query, kind_option(kind), base, tag, limit + 1, more, offset)
    if len(rows) > limit:
        rows = rows[:limit]
        status(f"more results: --offset {offset + limit}")
    emit_json(rows) if as_json else artifact_table(rows)


def show_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="kind:name[@version], a name, or a hash prefix."),
    why: bool = typer.Option(False, "--why", help="Show every probe's verdict."),
    as_json: bool = JSON,
) -> None:
    """Show one artifact."""
    from hub.registry.queries import lineage_of, locations_of, probe_record, resolve_json

    hub = context(ctx)
    if Path(ref).exists():  # a file on disk: identify it without registering anything
        _show_file(hub, Path(ref), as_json)
        return
    with hub.db.reader() as reader:
        art = resolve_json(reader, ref)
        art["lineage"] = lineage_of(reader, art["id"])
        art["locations"] = locations_of(reader, art["id"])
        if why:
            art["why"] = probe_record(reader, art["id"])
    if as_json:
        emit_json(art)
        return
    console = out()
    for key in (
        "name",
        "kind",
        "base",
        "family",
        "format",
        "layout",
        "algo",
        "variant",
        "prediction",
        "version",
        "path",
        "source",
    ):
        if art.get(key):
            console.print(f"{key:>14}: {art[key]}", markup=False)
    console.print(f"{'size':>14}: {human_size(art['size'])} ({art['size']} bytes)")
    for hname, value in art["hashes"].items():
        if value:
            console.print(f"{hname:>14}: {value}")
    _print_locations(console, art)
    for key in ("tags", "trained_words"):
        if art[key]:
            console.print(f"{key:>14}: {', '.join(art[key])}", markup=False)
    if art["description"]:
        console.print(f"{'description':>14}: {art['description'][:400]}", markup=False)
    if art["overrides"]:
        console.print(f"{'set by user':>14}: {', '.join(art['overrides'])}")
    for parent in art["lineage"]:
        console.print(
            f"{'made from':>14}: {parent['kind']}:{parent['name']} ({parent['relation']})",
            markup=False,
        )
    for verdict in art.get("why", []):
        mark = "matched" if verdict["matched"] else "declined"
        console.print(f"{verdict['probe']:>14}: {mark}: {verdict['reason']}", markup=False)
    if why:
        _print_family_evidence(console, art)


def _print_family_evidence(console, art) -> None:  # noqa: ANN001
    """The family and every piece of evidence for it, strongest first."""
    evidence = art["family_evidence"] or [{"source": "none", "family": "unknown"}]
    for n, e in enumerate(evidence):
        mark = "family" if n == 0 else "also"
        detail = f" ({e['detail']})" if e.get("detail") else ": no evidence"
        console.print(f"{mark:>14}: {e['family']} by {e['source']}{detail}", markup=False)


def _print_locations(console, art: dict) -> None:  # noqa: ANN001
    """The hash status when pending, and every location (the primary one first)."""
    if art["hash_status"] == "pending":
        console.print(f"{'hashes':>14}: hash pending (hub scan fills them in)")
    for place in art["locations"]:
        marks = [
            mark
            for mark, on in (
                ("primary", place["primary"]),
                ("made by hub", place["created_by_hub"]),
            )
            if on
        ]
        extra = f" ({', '.join(marks)})" if marks else ""
        console.print(f"{'location':>14}: {place['path']}{extra}", markup=False)


def tag_command(ctx: typer.Context, ref: str, tags: list[str], as_json: bool = JSON) -> None:
    """Add tags to an artifact."""
    from hub.manage import tag

    art = tag(context(ctx), ref, tags)
    emit_json(art) if as_json else status(f"{art['name']}: {', '.join(art['tags'])}")


def untag_command(ctx: typer.Context, ref: str, tags: list[str], as_json: bool = JSON) -> None:
    """Remove tags from an artifact."""
    from hub.manage import untag

    art = untag(context(ctx), ref, tags)
    emit_json(art) if as_json else status(f"{art['name']}: {', '.join(art['tags']) or '-'}")


def set_command(
    ctx: typer.Context,
    ref: str,
    kind: str = KIND,
    base: str = BASE,
    family: str = typer.Option(
        None, "--family", help="The family (a share-site label); 'auto': from the evidence."
    ),
    as_json: bool = JSON,
) -> None:
    """Override an artifact's kind, base or family; later scans keep the override."""
    from hub.manage import set_identity

    art = set_identity(
        context(ctx),
        ref,
        kind_option(kind) and parse_kind_option(kind),
        base_option(base) and parse_base_option(base),
        family,
    )
    if as_json:
        emit_json(art)
    else:
        status(f"{art['kind']}:{art['name']} base {art['base']} family {art['family']}")


def rm_command(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="An artifact ref, or the path of one of its locations."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    keep_file: bool = typer.Option(False, "--keep-file", help="Keep the file in the store."),
    as_json: bool = JSON,
) -> None:
    """Remove an artifact from the registry (and its file, if the store owns it); given the
    path of one of its locations, forget that location only while another one remains."""
    from hub.manage import location_owner, remove, remove_location
    from hub.registry.queries import resolve_json

    hub = context(ctx)
    owner = location_owner(hub, ref) if Path(ref).is_absolute() or Path(ref).exists() else None
    if owner is not None and len(owner["locations"]) > 1:
        _confirm(yes, f"forget location {ref} of {owner['kind']}:{owner['name']}?")
        removal = remove_location(hub, ref, keep_file=keep_file)
        if as_json:
            emit_json(
                {"status": "location removed", "location": removal.location, **removal.artifact}
            )
        else:
            status(
                f"forgot {removal.location}; {owner['kind']}:{owner['name']} stays at "
                f"{removal.artifact['path']}"
            )
        return
    with hub.db.reader() as reader:
        art = owner or resolve_json(reader, ref)
    what = "and delete its file" if art["in_store"] and not keep_file else "(file kept)"
    _confirm(yes, f"remove {art['kind']}:{art['name']} {what}?")
    removal = remove_location(hub, ref, keep_file) if owner else remove(hub, ref, keep_file)
    gone = "location removed" if removal.location else "removed"  # others keep a shared row
    if as_json:
        emit_json({"status": gone, "deleted_file": removal.deleted_file, **removal.artifact})
        return
    status(
        f"{gone} {art['kind']}:{art['name']}"
        + (f", deleted {removal.location or art['path']}" if removal.deleted_file else "")
        + (" (other machines keep it)" if removal.location and not owner else "")
    )


def _confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question, err=True):
        raise typer.Exit(1)


def _search_remote(hub, query, kind, base, tag, limit, cursor, source, as_json) -> None:  # noqa: ANN001
    from hub.remote import search_remote

    tags = tag or []
    if len(tags) > 1:
        raise HubError("share sites filter on one tag at a time")
    found = search_remote(
        hub,
        query,
        kind_option(kind),
        base_option(base),
        tags[0] if tags else None,
        min(limit, 100),
        cursor,
        source,
    )
    cursors = found.cursors
    if as_json:
        emit_json({"items": found.items, "next_cursor": found.next_cursor, "cursors": cursors})
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ref", "name", "type", "base", "version", "tags"):
        table.add_column(col)
    for i in found.items:
        table.add_row(
            i["ref"],
            i["name"] or "",
            i["type"] or "",
            i["family"] or "",
            i["version"] or "",
            ", ".join((i["tags"] or [])[:4]),
        )
    print_table(table)
    for name, next_cursor in cursors.items():
        more = f"--source {name} " if len(found.searched) > 1 else ""
        status(f"more: hub search {query!r} --remote {more}--cursor {next_cursor}")


def _show_file(hub, path: Path, as_json: bool) -> None:  # noqa: ANN001
    """Every probe's verdict on an unregistered file (exit 1 when the file is refused)."""
    from hub.register import identify_path

    try:
        ident = identify_path(hub, path)
    except HubError as exc:
        if as_json:
            emit_json({"path": str(path), "refused": getattr(exc, "reason", exc.message)})
        raise
    best = ident.best
    result = {
        "path": str(path),
        "format": str(ident.format),
        "kind": str(best.kind),
        "base": str(best.base),
        "layout": best.layout,
        "algo": best.algo,
        "variant": best.variant,
        "why": ident.why(),
    }
    if as_json:
        emit_json(result)
        return
    console = out()
    for key in ("path", "format", "kind", "base", "layout", "algo", "variant"):
        if result[key]:
            console.print(f"{key:>14}: {result[key]}", markup=False)
    for verdict in result["why"]:
        mark = "matched" if verdict["matched"] else "declined"
        console.print(f"{verdict['probe']:>14}: {mark}: {verdict['reason']}", markup=False)
