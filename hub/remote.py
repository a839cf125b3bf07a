"""The share site from the library's side: the Civitai source, remote search. Identification
is :mod:`hub.identify`; updates :mod:`hub.updates`."""

from __future__ import annotations

from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.install import sources


def civitai(ctx: Context) -> Any:
    source = sources(ctx).get("civitai")
    if source is None:
        raise HubError("the civitai source plugin is disabled")
    return source


def search_remote(
    ctx: Context,
    query: str,
    kind: str | None,
    base: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    return civitai(ctx).search(query, kind, base, tag, limit, cursor)
