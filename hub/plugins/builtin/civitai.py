"""The Civitai source (the default): search by name and kind, model and version ids, model
page URLs, and lookup by hash. Facts: docs/SHARE_SITES.md.

The three version shapes Civitai returns (inside a model, from /model-versions, from by-hash)
differ; everything here reads only fields all three share, plus ``modelId``/``model`` where
present.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from hub import hookimpl
from hub.core.civitai_tables import (
    BASES,
    CIVITAI_HOSTS,
    HASHES_PER_ID_REQUEST,
    KIND_TYPES,
    MODELS_PER_REQUEST,
    SIZE_KB_SLACK,
    TYPE_KIND,
    map_base,
)
from hub.core.config import Settings
from hub.core.errors import HubError
from hub.core.text import html_to_text
from hub.plugins.sourcing import (
    CAPABILITIES,
    AmbiguousRemoteError,
    BaseSource,
    Choice,
    RemoteFile,
    RemoteVersion,
    SearchPage,
)

MAIN_TYPES = ("Model", "Pruned Model")
# file types that are the weights asked for when the kind is: a negative embedding, a VAE
KIND_FILE_TYPES = {"embedding": ("Negative",), "vae": ("VAE",)}
# `metadata.format` values of single-file weights (`Diffusers` is a zipped folder; GGUF, ONNX
# and Core ML are not loaded); an `Other` (or missing) format counts when the name says weights
WEIGHT_FORMATS = ("SafeTensor", "PickleTensor")
WEIGHT_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def _file_score(f: dict[str, Any], choice: Choice) -> tuple[int, ...]:
    meta = f.get("metadata") or {}
    return (
        f.get("type") in MAIN_TYPES,  # over a Negative file asked for by the kind
        choice.fp is None or meta.get("fp") == choice.fp,
        choice.size is None or meta.get("size") == choice.size,
        meta.get("format") == "SafeTensor",
        meta.get("format") != "PickleTensor",
        meta.get("size") == "pruned",
        meta.get("fp") == "fp16",
        bool(f.get("primary")),
    )


def _describe(f: dict[str, Any]) -> str:
    return f"{f.get('name')} ({f.get('type')}, {(f.get('metadata') or {}).get('format')})"


def _is_weights(f: dict[str, Any], types: tuple[str, ...]) -> bool:
    """A file of one of ``types`` (case-insensitive) in a single-file weights format."""
    fmt = (f.get("metadata") or {}).get("format")
    return str(f.get("type", "")).lower() in {t.lower() for t in types} and (
        fmt in WEIGHT_FORMATS
        or (fmt in (None, "Other") and str(f.get("name", "")).lower().endswith(WEIGHT_SUFFIXES))
    )


def choose_file(
    files: list[dict[str, Any]], choice: Choice, kind: str | None = None, what: str = "version"
) -> dict[str, Any]:
    """The file to fetch among a version's ``files``: weights only (``Model``, ``Pruned Model``,
    and ``Negative``/``VAE`` when that kind is asked for; ``--file-type`` for another type) in a
    weights format, never a training-data or zipped-diffusers archive; then SafeTensor over
    PickleTensor, --fp/--size. ``what`` names the version in errors."""
    if not files:
        raise HubError(f"{what} has no files to download (archived?)")
    types = (choice.file_type,) if choice.file_type else MAIN_TYPES + KIND_FILE_TYPES.get(kind, ())
    candidates = [f for f in files if _is_weights(f, types)]
    if not candidates:
        label = f"{choice.file_type} file" if choice.file_type else "model file"
        raise HubError(
            f"{what} has no {label} to install; it has: {'; '.join(map(_describe, files))}",
            hint="pick another version (@VERSION), or --file-type TYPE for another file",
        )
    files = candidates
    best = max(files, key=lambda f: _file_score(f, choice))
    meta = best.get("metadata") or {}
    if (choice.fp and meta.get("fp") != choice.fp) or (
        choice.size and meta.get("size") != choice.size
    ):
        have = ", ".join(
            f"{(f.get('metadata') or {}).get('fp')}/{(f.get('metadata') or {}).get('size')}"
            for f in files
        )
        raise HubError(f"no file with fp={choice.fp} size={choice.size}", hint=f"files: {have}")
    return best


class CivitaiSource(BaseSource):
    """Civitai, or any site speaking its API. ``prefix`` names a site configured as
    ``[sources.NAME]``: it claims only refs ``NAME:...`` and resolves what follows."""

    capabilities = frozenset(CAPABILITIES)

    def __init__(
        self,
        settings: Settings,
        name: str = "civitai",
        origin: str | None = None,
        token: str | None = None,
    ) -> None:
        from hub.core.download import Http

        self.name = name
        self.prefix = None if name == "civitai" else f"{name}:"
        self.origin = origin or settings.civitai_url
        token = token if name != "civitai" else settings.civitai_token
        self.hosts = self._site_hosts()
        self.http = Http(auth_hosts=self.hosts, token=token, timeout=settings.http_timeout)

    def _site_hosts(self) -> frozenset[str]:
        """The configured origin's host (and its ``www.`` form), plus Civitai's public hosts
        when this is Civitai itself (the default source, or a named one pointing at it)."""
        host = urlsplit(self.origin).netloc.lower().removeprefix("www.")
        own = {host, f"www.{host}"}
        return frozenset(own | CIVITAI_HOSTS if self.prefix is None or own & CIVITAI_HOSTS else own)

    def on_site(self, url: str) -> bool:
        """Whether an http(s) URL is on one of this site's hosts."""
        return (
            url.startswith(("http://", "https://")) and urlsplit(url).netloc.lower() in self.hosts
        )

    def claims(self, ref: str) -> bool:
        if self.prefix is not None:
            return ref.startswith(self.prefix)
        head = ref.split(":", 1)[0].lower()
        if head in ("civitai", "sha256", "autov2", "autov3", *KIND_TYPES):
            return True
        return self.on_site(ref)

    def api(self, path: str, params: Any = None) -> Any:
        return self.http.get_json(f"{self.origin}/api/v1/{path}", params=params)

    # -- search, identification, updates -------------------------------------------------------

    def search(
        self,
        query: str,
        kind: str | None = None,
        base: str | None = None,
        tag: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """One page of ``/models`` results as summaries, and the cursor of the next page."""
        params: list[tuple[str, Any]] = [("limit", limit), ("nsfw", "true")]
        if query:
            params.append(("query", query))
        if tag:
            params.append(("tag", tag))
        if cursor:
            params.append(("cursor", cursor))
        params += [("types", t) for t in KIND_TYPES.get(kind or "", [])]
        params += [("baseModels", label) for label in BASES.get(base or "", ())]
        page = self.api("models", params=params)
        items = []
        for m in _of_kind(page.get("items") or [], kind):
            latest = (m.get("modelVersions") or [{}])[0]
            items.append(
                {
                    "ref": f"{self.prefix or ''}civitai:{m['id']}",
                    "name": m.get("name"),
                    "type": m.get("type"),
                    "kind": TYPE_KIND.get(m.get("type", "")),
                    "base": map_base(latest.get("baseModel")),
                    "family": latest.get("baseModel"),
                    "version": latest.get("name"),
                    "tags": [
                        t if isinstance(t, str) else t.get("name") for t in m.get("tags") or []
                    ],
                    "creator": (m.get("creator") or {}).get("username"),
                    "downloads": (m.get("stats") or {}).get("downloadCount"),
                }
            )
        return SearchPage(items, (page.get("metadata") or {}).get("nextCursor"))

    def lookup_sha256(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """SHA-256 (lower case) -> version object, through the bulk by-hash endpoint (100 per
        request; results come back in any order and are matched by the files' hashes)."""
        found: dict[str, dict[str, Any]] = {}
        wanted = {h.lower() for h in hashes}
        batch = sorted(wanted)
        for i in range(0, len(batch), 100):
            chunk = batch[i : i + 100]
            versions = self.http.post_json(f"{self.origin}/api/v1/model-versions/by-hash", chunk)
            for version in versions or []:
                for f in version.get("files") or []:
                    sha = str((f.get("hashes") or {}).get("SHA256", "")).lower()
                    if sha in wanted:
                        found[sha] = version
        return found

    def by_hash(self, sha256s: list[str]) -> dict[str, RemoteFile]:
        """What the site knows of files by SHA-256: the bulk by-hash lookup, then the models of
        the versions found (for tags, creator and description), many per request."""
        found = self.lookup_sha256(sha256s)
        models = self.models([int(v["modelId"]) for v in found.values() if v.get("modelId")])
        return {
            sha: self.remote_for_version(version, sha, models.get(int(version.get("modelId") or 0)))
            for sha, version in found.items()
        }

    def versions(self, source_refs: list[dict[str, Any]]) -> list[list[RemoteVersion]]:
        """Each installed model's versions, newest first (models fetched many per request)."""
        ids = [int(r["model_id"]) for r in source_refs if r.get("model_id")]
        models = self.models(ids)
        out = []
        for r in source_refs:
            model = models.get(int(r.get("model_id") or 0)) or {}
            out.append(
                [
                    RemoteVersion(
                        v.get("id"),
                        v.get("name"),
                        v.get("baseModel"),
                        f"{self.prefix or ''}civitai:{model['id']}@{v.get('id')}",
                    )
                    for v in model.get("modelVersions") or []
                ]
            )
        return out

    def remote_for_version(
        self, version: dict[str, Any], sha256: str, model: dict[str, Any] | None = None
    ) -> RemoteFile:
        """The file of ``version`` with this SHA-256, described with ``model``'s metadata."""
        return self._from_version(version, model, Choice(), want_sha=sha256)

    def models(self, model_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Models by id, many per request."""
        out: dict[int, dict[str, Any]] = {}
        ids = sorted(set(model_ids))
        for i in range(0, len(ids), 50):
            chunk = ids[i : i + 50]
            page = self.api(
                "models",
                params=[("ids", ",".join(map(str, chunk))), ("limit", 100), ("nsfw", "true")],
            )
            for m in page.get("items") or []:
                out[int(m["id"])] = m
        return out

    # -- bulk look-ups for identify and outdated (hub.identify, hub.updates) ----------------

    def models_page(self, model_ids: list[int]) -> list[dict[str, Any]]:
        """Up to 100 models by id in one request (``/models?ids=...&limit=100``)."""
        ids = ",".join(map(str, sorted(set(model_ids))[:MODELS_PER_REQUEST]))
        params = [("ids", ids), ("limit", MODELS_PER_REQUEST), ("nsfw", "true")]
        return list(self.api("models", params=params).get("items") or [])

    def version_ids_by_sha256(self, hashes: list[str]) -> list[dict[str, Any]]:
        """``{"modelVersionId", "modelId", "hash"}`` for the SHA-256s the site knows, up to
        10,000 per request (``POST /model-versions/by-hash/ids``)."""
        body = sorted({h.upper() for h in hashes})[:HASHES_PER_ID_REQUEST]
        url = f"{self.origin}/api/v1/model-versions/by-hash/ids"
        return list(self.http.post_json(url, body) or [])

    def version_by_hash(self, value: str) -> dict[str, Any] | None:
        """The version a hash of any type names (``GET /model-versions/by-hash/:hash``), or
        None when the site does not know it."""
        from hub.core.download import RemoteNotFoundError

        try:
            return self.api(f"model-versions/by-hash/{value.upper()}")
        except RemoteNotFoundError:
            return None

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, ref: str, choice: Choice) -> RemoteFile:
        if self.prefix is not None:
            ref = ref.removeprefix(self.prefix)
        head, _, rest = ref.partition(":")
        head = head.lower()
        if ref.startswith(("http://", "https://")):
            model_id, version_id = self._parse_url(ref)
            return self._from_model(model_id, version_id, None, choice)
        if head == "civitai":
            model_part, _, version = rest.partition("@")
            if not model_part.isdigit() or (version and not version.isdigit()):
                raise HubError(f"'{ref}' is not civitai:MODEL_ID[@VERSION_ID]")
            return self._from_model(
                int(model_part), int(version) if version else None, None, choice
            )
        if head in ("sha256", "autov2", "autov3"):
            if not re.fullmatch(r"[0-9a-fA-F]{8,64}", rest):
                raise HubError(f"'{rest}' is not a hash")
            version = self.api(f"model-versions/by-hash/{rest.upper()}")
            model = self.api(f"models/{version['modelId']}") if version.get("modelId") else None
            return self._from_version(
                version, model, choice, want_sha=rest if head == "sha256" else None
            )
        name, _, version = rest.partition("@")
        return self._search(head, name, version or None, choice)

    def _parse_url(self, url: str) -> tuple[int, int | None]:
        parts = urlsplit(url)
        path = [p for p in parts.path.split("/") if p]
        query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
        if path[:3] == ["api", "download", "models"] and len(path) > 3 and path[3].isdigit():
            version = self.api(f"model-versions/{path[3]}")
            return int(version["modelId"]), int(path[3])
        if "models" in path:
            after = path[path.index("models") + 1 :]
            if after and after[0].isdigit():
                vid = query.get("modelVersionId")
                return int(after[0]), int(vid) if vid and vid.isdigit() else None
        raise HubError(f"{url} is not a Civitai model page URL")

    def _search(self, kind: str, name: str, version: str | None, choice: Choice) -> RemoteFile:
        params = [("query", name), ("limit", 20), ("nsfw", "true")]
        params += [("types", t) for t in KIND_TYPES[kind]]
        items = _of_kind(self.api("models", params=params).get("items") or [], kind)
        if kind == "dreambooth":
            items = [i for i in items if i.get("checkpointType") in (None, "Trained")]
        exact = [i for i in items if str(i.get("name", "")).lower() == name.lower()]
        pool = exact or items
        if not pool:
            raise HubError(
                f"nothing on Civitai matches {kind}:{name}",
                hint="try `hub search --remote` with other words",
            )
        if choice.pick is not None:
            if not 1 <= choice.pick <= len(pool):
                raise HubError(f"--pick {choice.pick} is not between 1 and {len(pool)}")
            item = pool[choice.pick - 1]
        elif len(pool) == 1:
            item = pool[0]
        else:
            raise AmbiguousRemoteError(
                f"{kind}:{name}",
                [
                    f"{i.get('name')} ({i.get('type')}, "
                    f"{((i.get('modelVersions') or [{}])[0]).get('baseModel')}, civitai:{i['id']})"
                    for i in pool
                ],
            )
        return self._from_model(int(item["id"]), None, version, choice, model=item)

    def _from_model(
        self,
        model_id: int,
        version_id: int | None,
        version_name: str | None,
        choice: Choice,
        model: dict[str, Any] | None = None,
    ) -> RemoteFile:
        model = model if model and model.get("modelVersions") else self.api(f"models/{model_id}")
        versions = model.get("modelVersions") or []
        if version_id is not None:
            picked = [v for v in versions if v.get("id") == version_id]
        elif version_name is not None:
            picked = [
                v
                for v in versions
                if str(v.get("name")).lower() == version_name.lower()
                or str(v.get("id")) == version_name
            ]
        else:
            picked = versions[:1]  # newest first
        if not picked:
            raise HubError(
                f"model {model_id} has no version "
                f"{version_id or version_name or '(none published)'}"
            )
        full = self.api(f"model-versions/{picked[0]['id']}")  # the version shape, with meta
        return self._from_version(full, model, choice)

    def _from_version(
        self,
        version: dict[str, Any],
        model: dict[str, Any] | None,
        choice: Choice,
        want_sha: str | None = None,
    ) -> RemoteFile:
        files = version.get("files") or []
        model_obj = version.get("model") or {}
        model_name = (model or {}).get("name") or model_obj.get("name") or "model"
        mtype = (model or {}).get("type") or model_obj.get("type")
        if want_sha:
            matches = [
                f
                for f in files
                if str((f.get("hashes") or {}).get("SHA256", "")).lower() == want_sha.lower()
            ]
            files = matches or files
            if matches and not choice.file_type:  # the hash asked for that file, whatever type
                choice = replace(choice, file_type=str(matches[0].get("type") or "Model"))
        model_id = version.get("modelId") or (model or {}).get("id")
        what = f"version {version.get('id')} of {model_name} (model {model_id})"
        file = choose_file(files, choice, TYPE_KIND.get(mtype or ""), what)
        meta = file.get("metadata") or {}
        size_kb = file.get("sizeKB")
        sha256 = (file.get("hashes") or {}).get("SHA256") or None
        images = [i for i in version.get("images") or [] if i.get("type", "image") == "image"]
        return RemoteFile(
            source=self.name,
            url=self._download_url(version, file),
            filename=str(file.get("name") or f"{model_name}.safetensors"),
            name=model_name,
            size=round(size_kb * 1024) if isinstance(size_kb, int | float) else None,
            size_slack=SIZE_KB_SLACK,
            sha256=sha256,
            unverified=None
            if sha256
            else f"{self.name} publishes no SHA-256 for {file.get('name')}",
            kind=TYPE_KIND.get(mtype or ""),
            version=version.get("name"),
            family=version.get("baseModel"),
            base=map_base(version.get("baseModel"), version.get("baseModelType")),
            variant={"Inpainting": "inpaint", "Refiner": "refiner", "Pix2Pix": "instruct"}.get(
                version.get("baseModelType") or ""
            ),
            trained_words=[
                str(w).strip() for w in version.get("trainedWords") or [] if str(w).strip()
            ],
            tags=[
                t if isinstance(t, str) else str(t.get("name"))
                for t in (model or {}).get("tags") or []
            ],
            description=html_to_text(
                (model or {}).get("description") or version.get("description")
            ),
            ids={
                "model_id": version.get("modelId") or (model or {}).get("id"),
                "version_id": version.get("id"),
                "file_id": file.get("id"),
                "creator": ((model or {}).get("creator") or {}).get("username"),
                "nsfw_level": (model or {}).get("nsfwLevel", version.get("nsfwLevel")),
            },
            site_json=version,
            preview_url=images[0].get("url") if images else None,
            pickle=meta.get("format") != "SafeTensor"  # the bytes decide after the download
            and not str(file.get("name", "")).lower().endswith((".safetensors", ".sft")),
        )

    def _download_url(self, version: dict[str, Any], file: dict[str, Any]) -> str:
        """The file's ``downloadUrl`` when it is on this site's hosts (``api.civitai.com`` in
        real answers), else the download route of the configured origin for that file."""
        url = str(file.get("downloadUrl") or "")
        if self.on_site(url):
            return url
        query = f"?{urlencode({'fileId': file['id']})}" if file.get("id") else ""
        return f"{self.origin}/api/download/models/{version['id']}{query}"


def _of_kind(items: list[dict[str, Any]], kind: str | None) -> list[dict[str, Any]]:
    """Search results of the kind's Civitai types only (the site has ignored ``types``
    together with ``query`` before)."""
    types = KIND_TYPES.get(kind or "")
    return [i for i in items if i.get("type") in types] if types else items


@hookimpl(trylast=True)
def register_sources(register):
    register("civitai", CivitaiSource)


@hookimpl(trylast=True)
def configured_sources(settings: Settings) -> list[CivitaiSource]:
    """The ``[sources.NAME]`` sites of hub.toml: they speak Civitai's API."""
    return [CivitaiSource(settings, s.name, s.url, s.token) for s in settings.named_sources]
