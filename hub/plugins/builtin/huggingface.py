"""Hugging Face repos through huggingface_hub: ``hf:OWNER/REPO/PATH[@REV]``.

huggingface_hub resolves the file (commit, ETag = the SHA-256 of an LFS file, size, and the
final location); sd-hub fetches the bytes itself so that they are hashed while they stream
and verified against that SHA-256.
"""

from __future__ import annotations

import os
import re

from hub import hookimpl
from hub.core.config import Settings
from hub.core.errors import HubError
from hub.plugins.sourcing import BaseSource, Choice, RemoteFile

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HuggingFaceSource(BaseSource):
    """Resolves and downloads (files and whole diffusers folders); it does not search, look
    files up by hash or list versions."""

    name = "huggingface"

    def __init__(self, settings: Settings) -> None:
        from urllib.parse import urlsplit

        from hub.core.download import Http

        self.endpoint = settings.hf_endpoint
        self.token = settings.hf_token
        self.http = Http(
            auth_hosts=[urlsplit(self.endpoint).netloc],
            token=self.token,
            timeout=settings.http_timeout,
        )

    def claims(self, ref: str) -> bool:
        return ref.lower().startswith("hf:")

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        """``hf:OWNER/REPO[/PATH][@REV]``; as ``huggingface:REF`` the ``hf:`` may be left out."""
        ref = ref if self.claims(ref) else f"hf:{ref}"
        body, _, revision = ref[3:].partition("@")
        parts = body.strip("/").split("/")
        if len(parts) < 2:
            raise HubError(f"'{ref}' is not hf:OWNER/REPO[/PATH][@REVISION]")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        repo, path = "/".join(parts[:2]), "/".join(parts[2:])
        if not path:
            return self._folder(repo, revision or None, choice)
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

    def _folder(self, repo: str, revision: str | None, choice: Choice) -> RemoteFile:
        from huggingface_hub import HfApi, hf_hub_url
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self.endpoint, token=self.token or False)
        try:
            commit = api.model_info(repo, revision=revision).sha
            entries = [
                e
                for e in api.list_repo_tree(repo, recursive=True, revision=commit)
                if isinstance(e, RepoFile)
            ]
        except RepositoryNotFoundError:
            raise HubError(f"no Hugging Face repo {repo} (or it needs HF_TOKEN)") from None
        except HfHubHTTPError as exc:
            raise HubError(f"{repo}: {type(exc).__name__}") from None
        paths = {e.path for e in entries}
        if "model_index.json" not in paths:
            raise HubError(
                f"{repo} is not a diffusers folder (no model_index.json)",
                hint="name one file: hf:OWNER/REPO/PATH",
            )
        files = [
            (
                e.path,
                hf_hub_url(repo, e.path, revision=commit, endpoint=self.endpoint),
                e.size,
                e.lfs.sha256 if e.lfs else None,
            )
            for e in sorted(entries, key=lambda e: e.path)
            if _wanted(paths, e.path, choice.fp)
        ]
        name = repo.split("/", 1)[1]
        return RemoteFile(
            source=self.name,
            url=f"{self.endpoint}/{repo}",
            filename=name,
            name=name,
            size=sum(f[2] or 0 for f in files),
            kind="checkpoint",
            ids={"repo": repo, "revision": commit},
            files=files,
            pickle=any(f[0].endswith(".bin") for f in files),
        )


def _wanted(paths: set[str], path: str, fp: str | None) -> bool:
    """The files of a diffusers folder worth fetching: configs, tokenizer files, and one
    weights file per component (safetensors over .bin, the plain variant unless --fp)."""
    name = path.rsplit("/", 1)[-1]
    if (
        name.startswith(".")
        or name.endswith((".md", ".png", ".jpg", ".onnx", ".msgpack", ".h5", ".ckpt"))
        or "/" not in path
        and name not in ("model_index.json",)
    ):
        return False
    if name.endswith((".json", ".txt", ".model")):
        return True
    stem, _, ext = name.rpartition(".")
    variant = stem.split(".", 1)[1] if "." in stem else None
    if ext not in ("safetensors", "bin") or variant != fp:
        return False
    folder = path.rsplit("/", 1)[0]
    return ext == "safetensors" or not any(
        p.startswith(folder + "/") and p.endswith(".safetensors") for p in paths
    )


@hookimpl(trylast=True)
def register_sources(register):
    register("huggingface", HuggingFaceSource)
