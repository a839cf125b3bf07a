"""Plain https URLs: the file is whatever the server sends, hashed as it arrives."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from hub import hookimpl
from hub.core.civitai_tables import CIVITAI_HOSTS
from hub.core.config import Settings
from hub.plugins.sourcing import BaseSource, Choice, RemoteFile


class UrlSource(BaseSource):
    """Resolves and downloads any http(s) URL (Civitai's excepted); nothing else."""

    name = "url"

    def __init__(self, settings: Settings) -> None:
        from hub.core.download import Http

        self.http = Http(timeout=settings.http_timeout)  # no token to an arbitrary host

    def claims(self, ref: str) -> bool:
        """An http(s) URL, except a Civitai page or API URL: a model page is no file, and
        with the civitai plugin disabled such a URL has no source."""
        return (
            ref.startswith(("https://", "http://"))
            and urlsplit(ref).netloc.lower() not in CIVITAI_HOSTS
        )

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        path = unquote(urlsplit(ref).path)
        filename = path.rsplit("/", 1)[-1] or "download.safetensors"
        stem = filename.rsplit(".", 1)[0]
        return RemoteFile(
            source=self.name,
            url=ref,
            filename=filename,
            name=stem,
            ids={"url": ref.split("?", 1)[0]},
            pickle=filename.lower().endswith((".ckpt", ".pt", ".pth", ".bin")),
            named_by_url=True,
        )


@hookimpl(trylast=True)
def register_sources(register):
    register("url", UrlSource)
