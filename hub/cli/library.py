"""Commands on the local library: import, scan, list, search, show, tag, untag, set, rm,
verify."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.output import (
    artifact_table,
    byte_progress,
    emit_json,
    error_line,
    human_size,
    out,
    print_table,
    spinner,
    status,
)
from hub.cli.state import context
from hub.core.errors import HubError

JSON = typer.Option(False, "--json", help="Print JSON on stdout.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
KIND = typer.Option(None, "--kind", help="checkpoint, lora, embedding, hypernetwork, vae.")
BASE = typer.Option(None, "--base", help="sd1, sd2, sdxl, sdxl-refiner, ...")
TAGS = typer.Option(None, "--tag", "-t", help="A tag (repeatable).")


def register(app: typer.Typer) -> None:  # noqa: C901 - one closure per command
    @app.command("import")
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
        from hub.core.taxonomy import parse_base, parse_kind
        from hub.importing import import_path
        from hub.register import Overrides

        if name and len(paths) > 1:
            raise HubError("--name applies to one path only")
        overrides = Overrides(
            kind=parse_kind(kind) if kind else None,
            base=parse_base(base) if base else None,
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
                verb = "added" if result.status == "added" else "already registered"
                status(
                    f"{verb}: {a['kind']}:{a['name']} ({a['base']}, "
                    f"{a['algo'] or a['layout'] or a['format']}) {a['hashes']['autov2']}"
                )
        if as_json:
            emit_json(results)
        if failures:
            raise typer.Exit(1)

    @app.command("install")
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
        verb = "installed" if result.status == "added" else "already installed"
        status(
            f"{verb}: {a.get('kind')}:{a.get('name')} ({a.get('base')}, "
            f"{a.get('algo') or a.get('layout')}) {a.get('hashes', {}).get('autov2')} -> "
            f"{a.get('path')}"
        )

    @app.command("identify")
    def identify_command(
        ctx: typer.Context,
        refs: list[str] = typer.Argument(None, help="Artifacts to look up (default: all)."),
        as_json: bool = JSON,
    ) -> None:
        """Look local files up on Civitai by SHA-256 and store what it knows about them."""
        from hub.remote import identify

        report = identify(context(ctx), refs or None)
        if as_json:
            emit_json({"matched": report.matched, "unknown": report.unknown, "notes": report.notes})
            return
        for note in report.notes:
            status(f"note: {note}")
        for m in report.matched:
            status(
                f"identified {m['name']}: civitai:{m.get('model_id')}@{m.get('version_id')}"
                f" ({m.get('version')})"
            )
        status(f"{len(report.matched)} identified, {len(report.unknown)} not on Civitai")

    @app.command("outdated")
    def outdated_command(ctx: typer.Context, as_json: bool = JSON) -> None:
        """List installed artifacts with a newer version on their share site."""
        from hub.remote import outdated

        rows = outdated(context(ctx))
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            out().print(
                f"{r['kind']}:{r['name']} {r['installed']} -> {r['newest']} "
                f"(hub install {r['ref']})",
                markup=False,
            )
        if not rows:
            status("everything is up to date")

    @app.command("merge")
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
            help="weighted-sum, add-difference, ties, dare (with --with).",
        ),
        alpha: float = typer.Option(0.5, "--alpha", help="The multiplier M."),
        density: float = typer.Option(0.2, "--density", help="TIES/DARE: fraction kept."),
        seed: int = typer.Option(0, "--seed", help="DARE's random seed."),
        loras: list[str] = typer.Option(
            None, "--loras", help="Merge LoRAs REF[:W] into one (repeatable; no BASE)."
        ),
        rank: int = typer.Option(
            None, "--rank", help="With --loras: SVD to this rank (default: exact concatenation)."
        ),
        name: str = typer.Option(..., "--name", help="Name of the result."),
        unet_only: bool = typer.Option(
            False, "--unet-only", help="Leave text encoders as they are."
        ),
        output: Path = typer.Option(None, "--output", help="Also write the result here."),
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
                result = merge_checkpoints(
                    hub, [base, *with_], method, alpha, name, density, seed, output
                )
            elif base and lora:
                result = bake(
                    hub, base, [WeightedRef.parse(x) for x in lora], name, unet_only, output
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
        status(
            f"added: {a['kind']}:{a['name']} ({a['base']}) {a['hashes']['autov2']} -> {a['path']}"
        )

    @app.command("convert")
    def convert_command(
        ctx: typer.Context,
        ref: str = typer.Argument(..., help="The artifact to convert."),
        to: str = typer.Option(
            None,
            "--to",
            help="safetensors (single-file), diffusers, a1111, diffusers-embedding, kohya, peft.",
        ),
        dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16."),
        prune: bool = typer.Option(False, "--prune", help="Drop EMA and unused keys."),
        name: str = typer.Option(None, "--name", help="Name of the result."),
        as_json: bool = JSON,
        quiet: bool = QUIET,
    ) -> None:
        """Convert an artifact's format or dtype; the result is registered with lineage."""
        from hub.convert import convert

        with spinner("converting", not quiet):
            result = convert(context(ctx), ref, to, dtype, prune, name)
        if as_json:
            emit_json({"status": result.status, "steps": result.steps, **result.artifact})
            return
        a = result.artifact
        verb = "added" if result.status == "added" else "already registered"
        status(
            f"{verb}: {a['kind']}:{a['name']} ({a['format']}, {' -> '.join(result.steps)}) "
            f"{a['hashes']['autov2']}"
        )

    @app.command("scan")
    def scan_command(
        ctx: typer.Context,
        folder: Path = typer.Argument(..., help="A folder (A1111, ComfyUI or any tree)."),
        as_json: bool = JSON,
        quiet: bool = QUIET,
    ) -> None:
        """Register the models under a folder where they are (no copy); incremental."""
        from hub.scan import scan

        with spinner("scanning", not quiet) as tick:
            report = scan(context(ctx), folder, progress=tick)
        if as_json:
            emit_json(report.as_dict())
            return
        for path, reason in report.skipped:
            status(f"skipped {path}: {reason}")
        for path, same in report.duplicates:
            status(f"duplicate {path}: same bytes as {same}")
        status(
            f"{len(report.added)} added, {len(report.updated)} updated, "
            f"{report.unchanged} unchanged, {len(report.duplicates)} duplicates, "
            f"{len(report.skipped)} skipped ({human_size(report.hashed_bytes)} hashed)"
        )

    @app.command("list")
    def list_command(
        ctx: typer.Context,
        kind: str = KIND,
        base: str = BASE,
        tag: list[str] = TAGS,
        as_json: bool = JSON,
    ) -> None:
        """List registered artifacts."""
        from hub.registry.queries import list_artifacts

        with context(ctx).db.reader() as reader:
            rows = list_artifacts(reader, _kind(kind), _base(base), tag)
        emit_json(rows) if as_json else artifact_table(rows)

    @app.command("search")
    def search_command(
        ctx: typer.Context,
        query: str = typer.Argument(
            "", help="Words to find in names, tags, descriptions, trained words."
        ),
        kind: str = KIND,
        base: str = BASE,
        tag: list[str] = TAGS,
        limit: int = typer.Option(50, "--limit", help="At most this many results."),
        remote: bool = typer.Option(False, "--remote", help="Search Civitai instead."),
        cursor: str = typer.Option(None, "--cursor", help="Next page of a remote search."),
        as_json: bool = JSON,
    ) -> None:
        """Search the registry (full text, with kind/base/tag filters), or Civitai."""
        from hub.registry.queries import search

        if remote:
            _search_remote(context(ctx), query, kind, base, tag, limit, cursor, as_json)
            return
        with context(ctx).db.reader() as reader:
            rows = search(reader, query, _kind(kind), _base(base), tag, limit)
        emit_json(rows) if as_json else artifact_table(rows)

    @app.command("show")
    def show_command(
        ctx: typer.Context,
        ref: str = typer.Argument(..., help="kind:name[@version], a name, or a hash prefix."),
        why: bool = typer.Option(False, "--why", help="Show every probe's verdict."),
        as_json: bool = JSON,
    ) -> None:
        """Show one artifact."""
        from hub.registry.queries import lineage_of, probe_record, resolve_json

        hub = context(ctx)
        if Path(ref).exists():  # a file on disk: identify it without registering anything
            _show_file(hub, Path(ref), as_json)
            return
        with hub.db.reader() as reader:
            art = resolve_json(reader, ref)
            art["lineage"] = lineage_of(reader, art["id"])
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

    @app.command("tag")
    def tag_command(ctx: typer.Context, ref: str, tags: list[str], as_json: bool = JSON) -> None:
        """Add tags to an artifact."""
        from hub.manage import tag

        art = tag(context(ctx), ref, tags)
        emit_json(art) if as_json else status(f"{art['name']}: {', '.join(art['tags'])}")

    @app.command("untag")
    def untag_command(ctx: typer.Context, ref: str, tags: list[str], as_json: bool = JSON) -> None:
        """Remove tags from an artifact."""
        from hub.manage import untag

        art = untag(context(ctx), ref, tags)
        emit_json(art) if as_json else status(f"{art['name']}: {', '.join(art['tags']) or '-'}")

    @app.command("set")
    def set_command(
        ctx: typer.Context, ref: str, kind: str = KIND, base: str = BASE, as_json: bool = JSON
    ) -> None:
        """Override an artifact's kind or base; later scans keep the override."""
        from hub.manage import set_identity

        art = set_identity(
            context(ctx), ref, _kind(kind) and _parse_kind(kind), _base(base) and _parse_base(base)
        )
        emit_json(art) if as_json else status(f"{art['kind']}:{art['name']} base {art['base']}")

    @app.command("rm")
    def rm_command(
        ctx: typer.Context,
        ref: str,
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
        keep_file: bool = typer.Option(False, "--keep-file", help="Keep the file in the store."),
        as_json: bool = JSON,
    ) -> None:
        """Remove an artifact from the registry (and its file, if the store owns it)."""
        from hub.manage import remove
        from hub.registry.queries import resolve_json

        hub = context(ctx)
        with hub.db.reader() as reader:
            art = resolve_json(reader, ref)
        if not yes:
            what = "and delete its file" if art["in_store"] and not keep_file else "(file kept)"
            if not typer.confirm(f"remove {art['kind']}:{art['name']} {what}?", err=True):
                raise typer.Exit(1)
        removal = remove(hub, ref, keep_file=keep_file)
        if as_json:
            emit_json(
                {"status": "removed", "deleted_file": removal.deleted_file, **removal.artifact}
            )
            return
        status(
            f"removed {art['kind']}:{art['name']}"
            + (f", deleted {art['path']}" if removal.deleted_file else "")
        )

    @app.command("verify")
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
            status(
                f"{len(report.ok)} ok, {len(report.missing)} missing, {len(report.changed)} changed"
            )
        if not report.clean:
            raise typer.Exit(1)


def _search_remote(hub, query, kind, base, tag, limit, cursor, as_json) -> None:  # noqa: ANN001
    from hub.remote import search_remote

    tags = tag or []
    if len(tags) > 1:
        raise HubError("Civitai filters on one tag at a time")
    items, next_cursor = search_remote(
        hub, query, _kind(kind), _base(base), tags[0] if tags else None, min(limit, 100), cursor
    )
    if as_json:
        emit_json({"items": items, "next_cursor": next_cursor})
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ref", "name", "type", "base", "version", "tags"):
        table.add_column(col)
    for i in items:
        table.add_row(
            i["ref"],
            i["name"] or "",
            i["type"] or "",
            i["family"] or "",
            i["version"] or "",
            ", ".join((i["tags"] or [])[:4]),
        )
    print_table(table)
    if next_cursor:
        status(f"more: hub search {query!r} --remote --cursor {next_cursor}")


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


def _parse_kind(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_kind

    return parse_kind(text)


def _parse_base(text: str):  # noqa: ANN202
    from hub.core.taxonomy import parse_base

    return parse_base(text)


def _kind(text: str | None) -> str | None:
    return str(_parse_kind(text)) if text else None


def _base(text: str | None) -> str | None:
    return str(_parse_base(text)) if text else None
