"""A share site of its own: ``extsite:ID`` refs, and search, against the server that
hub.toml's ``[hub_ext] url`` names. It cannot look files up by hash or list versions."""

from __future__ import annotations

from typing import Any

import hub
from hub.core.config import Settings
from hub.plugins.sourcing import (
    DOWNLOAD,
    RESOLVE,
    SEARCH,
    BaseSource,
    Choice,
    RemoteFile,
    SearchPage,
)


class ExtSource(BaseSource):
    name = "extsite"
    capabilities = frozenset({RESOLVE, SEARCH, DOWNLOAD})

    def __init__(self, settings: Settings) -> None:
        from hub.core.download import Http

        self.origin = str(settings.raw.get("hub_ext", {}).get("url", "http://127.0.0.1:9"))
        self.http = Http(timeout=settings.http_timeout)

    def claims(self, ref: str) -> bool:
        return ref.startswith("extsite:")

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        item = self.http.get_json(f"{self.origin}/items/{ref.removeprefix('extsite:')}")
        return RemoteFile(
            source=self.name,
            url=f"{self.origin}/files/{item['file']}",
            filename=item["file"],
            name=item["name"],
            size=item["size"],
            sha256=item["sha256"],
            kind=item["kind"],
            tags=item["tags"],
            ids={"item": item["id"]},
        )

    def search(
        self,
        query: str,
        kind: str | None = None,
        base: str | None = None,
        tag: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        found = self.http.get_json(f"{self.origin}/search", params={"q": query})
        return SearchPage([_summary(item) for item in found[:limit]])


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "ref": f"extsite:{item['id']}",
        "name": item["name"],
        "type": "LoRA",
        "kind": item["kind"],
        "base": None,
        "family": None,
        "version": None,
        "tags": item["tags"],
        "creator": None,
        "downloads": None,
    }


@hub.hookimpl
def register_sources(register):
    register("extsite", ExtSource)
