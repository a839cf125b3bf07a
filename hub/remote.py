"""The share site from the library's side: the Civitai source, remote search. Identification
is :mod:`hub.identify`; updates :mod:`hub.updates`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.plugins.sourcing import SEARCH, NoSourceError, NotSupported, Source


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


def civitai(ctx: Context) -> Source:
    """The Civitai-API source: bulk identification and updates speak its API."""
    source = ctx.sources.get("civitai")
    if source is None:
        raise NoSourceError(
            "no Civitai source is loaded",
            hint="the civitai plugin is disabled ([plugins] disabled in hub.toml)",
        )
    return source
