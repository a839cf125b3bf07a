"""What the share site knows about the local library: remote search, identification of local
files by SHA-256, and newer versions of installed models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.sidecars import write_sidecars
from hub.plugins.sourcing import BY_HASH, SEARCH, VERSIONS, NoSourceError, NotSupported, Source
from hub.registry import writes
from hub.registry.queries import list_artifacts, resolve_json


def sources_that(ctx: Context, capability: str, name: str | None = None) -> list[Source]:
    """The sources that can do ``capability`` (or the one named, which must)."""
    available = ctx.sources
    if name is not None:
        if name not in available:
            raise NoSourceError(
                f"no source named '{name}' (loaded: {', '.join(sorted(available)) or 'none'})",
                hint="`hub plugins` lists the sources; a disabled plugin provides none",
            )
        source = available[name]
        if capability not in source.capabilities:
            raise NotSupported(name, capability.replace("-", " "))
        return [source]
    found = [s for s in available.values() if capability in s.capabilities]
    if not found:
        raise NoSourceError(
            f"no loaded source can {capability.replace('-', ' ')}",
            hint="a disabled plugin ([plugins] disabled in hub.toml) provides no source",
        )
    return found


@dataclass
class RemoteResults:
    """Search results of one or more sources: every item names its ``source``; ``cursors``
    holds each source's next page."""

    searched: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)

    @property
    def next_cursor(self) -> str | None:
        """The next page's cursor when one source was searched."""
        return self.cursors.get(self.searched[0]) if len(self.searched) == 1 else None


def search_remote(
    ctx: Context,
    query: str,
    kind: str | None,
    base: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
    source: str | None = None,
) -> RemoteResults:
    """Search the named source, or every source that can search (``cursor`` needs one)."""
    chosen = sources_that(ctx, SEARCH, source)
    if cursor and len(chosen) > 1:
        raise HubError(
            "--cursor continues one source's search",
            hint=f"add --source NAME (one of {', '.join(s.name for s in chosen)})",
        )
    results = RemoteResults([s.name for s in chosen])
    for site in chosen:
        page = site.search(query, kind, base, tag, limit, cursor)
        results.items += [{"source": site.name, **item} for item in page.items]
        if page.next_cursor:
            results.cursors[site.name] = page.next_cursor
    return results


@dataclass
class IdentifyReport:
    matched: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def identify(
    ctx: Context, refs: list[str] | None = None, source: str | None = None
) -> IdentifyReport:
    """Look local artifacts up by SHA-256 (bulk) on the named source, or on every source
    that can (the first that knows a file wins), and store what it says, with the model's
    tags, creator and description (as an install does); a hit must also match the file's
    size within what the site's listing allows. Sidecars are written beside each
    identified file."""
    sites = sources_that(ctx, BY_HASH, source)
    with ctx.db.reader() as reader:
        arts = [resolve_json(reader, r) for r in refs] if refs else list_artifacts(reader)
    arts = [a for a in arts if a["format"] != "diffusers"]
    found: dict[str, Any] = {}
    for site in sites:
        wanted = [a["hashes"]["sha256"] for a in arts if a["hashes"]["sha256"] not in found]
        if wanted:
            found |= site.by_hash(wanted)
    report = IdentifyReport()
    for art in arts:
        remote = found.get(art["hashes"]["sha256"])
        if remote is None:
            report.unknown.append(art["path"])
            continue
        _record(ctx, art, remote, report)
    return report


def _record(ctx: Context, art: dict[str, Any], remote: Any, report: IdentifyReport) -> None:
    """Store what a site says of one local artifact (unless the sizes disagree)."""
    site = remote.source
    if remote.size is not None and abs(remote.size - art["size"]) > remote.size_slack:
        report.notes.append(f"{art['path']}: same SHA-256 but {site} lists another size")
        return
    if remote.base not in (None, "unknown", art["base"]) and art["base"] != "unknown":
        report.notes.append(
            f"{art['name']}: {site} says {remote.family} ({remote.base}); "
            f"the file's tensors say {art['base']}: the file wins"
        )
    ref = {"site": site, **{k: v for k, v in remote.ids.items() if v}}
    values = {
        "trained_words": json.dumps(remote.trained_words),
        "family": remote.family,
        "version": remote.version,
        "source": site,
        "source_ref": json.dumps(ref),
        "site_json": json.dumps(remote.site_json),
    }
    if remote.description:
        values["description"] = remote.description
    with ctx.db.session() as session:
        row = writes.get(session, art["id"])
        writes.update(session, row, values)
        writes.add_tags(session, row, remote.tags, origin="site")
    write_sidecars(
        Path(art["path"]), remote.site_json, remote.description, remote.trained_words, art["base"]
    )
    report.matched.append(
        {"name": art["name"], "path": art["path"], **ref, "version": remote.version}
    )


def outdated(ctx: Context) -> list[dict[str, Any]]:
    """Installed artifacts with a newer version of the same model for the same base family,
    from every source that lists versions. A version already in the registry, wherever its
    file is, counts as held."""
    sites = {s.name: s for s in ctx.sources.values() if VERSIONS in s.capabilities}
    with ctx.db.reader() as reader:
        arts = [a for a in list_artifacts(reader) if a["source"].get("site") in sites]
    out = []
    for name, site in sites.items():
        mine = [a for a in arts if a["source"]["site"] == name]
        if not mine:
            continue
        held = {a["source"].get("version_id") for a in mine}
        for art, versions in zip(mine, site.versions([a["source"] for a in mine]), strict=True):
            row = _newer(art, versions, held)
            if row is not None:
                out.append(row)
    return out


def _newer(art: dict[str, Any], versions: list[Any], held: set[Any]) -> dict[str, Any] | None:
    """The outdated row of one artifact: the newest version above its own for its family."""
    ids = [v.id for v in versions]  # newest first
    mine = art["source"].get("version_id")
    newer = versions[: ids.index(mine)] if mine in ids else []
    newer = [v for v in newer if v.family == art["family"] and v.id not in held]
    if not newer:
        return None
    return {
        "name": art["name"],
        "kind": art["kind"],
        "installed": art["version"],
        "newest": newer[0].name,
        "ref": newer[0].ref,
        "family": art["family"],
    }
