"""Hugging Face repos through huggingface_hub: ``hf:OWNER/REPO/PATH[@REV]``.

huggingface_hub resolves the file (commit, ETag = the SHA-256 of an LFS file, size, and the
final location); sd-hub fetches the bytes itself so that they are hashed while they stream
and verified against that SHA-256.
"""

from __future__ import annotations

import os
import re

from hub import hookimpl
from hub.config import Settings
from hub.errors import HubError
from hub.plugins.sourcing import Choice, RemoteFile

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HuggingFaceSource:
    name = "huggingface"

    def __init__(self, settings: Settings) -> None:
        from urllib.parse import urlsplit

        from hub.download import Http

        self.endpoint = settings.hf_endpoint
        self.token = settings.hf_token
        self.http = Http(auth_host=urlsplit(self.endpoint).netloc, token=self.token)

    def claims(self, ref: str) -> bool:
        return ref.lower().startswith("hf:")

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        body, _, revision = ref[3:].partition("@")
        parts = body.strip("/").split("/")
        if len(parts) < 3:
            raise HubError(
                f"'{ref}' is not hf:OWNER/REPO/PATH[@REVISION]",
                hint="whole diffusers repos (hf:OWNER/REPO) are not supported yet",
            )
        repo, path = "/".join(parts[:2]), "/".join(parts[2:])
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

        url = hf_hub_url(repo, path, revision=revision or None, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self.token or False)
        except EntryNotFoundError:
            raise HubError(f"{repo} has no file {path}") from None
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status == 401:
                raise HubError(f"{repo}: a token is needed", hint="set HF_TOKEN") from None
            raise HubError(f"{repo}/{path}: {type(exc).__name__} (HTTP {status})") from None
        etag = (meta.etag or "").lower()
        filename = path.rsplit("/", 1)[-1]
        return RemoteFile(
            source=self.name,
            url=meta.location or url,
            filename=filename,
            name=filename.rsplit(".", 1)[0],
            size=meta.size,
            sha256=etag if _SHA256.match(etag) else None,
            ids={"repo": repo, "path": path, "revision": meta.commit_hash},
            pickle=filename.lower().endswith((".ckpt", ".pt", ".pth", ".bin")),
        )


@hookimpl(trylast=True)
def register_sources(register):
    register("huggingface", HuggingFaceSource)
