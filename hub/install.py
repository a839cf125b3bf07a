"""``hub install``: resolve a ref on a share site, download it verified and resumable, then
register it with everything the site knows and write the sidecars web UIs read."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError, RefNotFoundError
from hub.core.sidecars import Sidecars, write_sidecars
from hub.plugins.sourcing import Choice, RemoteFile, Source
from hub.register import (
    Overrides,
    autov3_by_header,
    commit,
    identify_path,
)
from hub.registry.store import safe_component

CONFIRM_BYTES = 1 << 30
MAX_PREVIEW_BYTES = 32 << 20


@dataclass
class InstallResult:
    status: str  # added, exists, planned
    remote: dict[str, Any]
    artifact: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def pick_source(ctx: Context, ref: str) -> tuple[Source, str]:
    """The source for a ref, and the ref as that source reads it (``NAME:REF`` picks NAME;
    Civitai handles ``kind:name`` and hashes)."""
    from hub.plugins import sourcing

    return sourcing.pick_source(ctx.sources, ref)


def needs_confirmation(remote: RemoteFile) -> str | None:
    """Why an install should ask first (over 1 GB, a pickle, bytes that cannot be checked),
    or None."""
    reasons = []
    if remote.size and remote.size > CONFIRM_BYTES:
        reasons.append(f"{remote.filename} is {remote.size / 2**30:.1f} GB")
    if remote.pickle:
        reasons.append(pickle_reason(remote.filename))
    if remote.unverified:
        reasons.append(f"{remote.unverified}: its bytes cannot be verified")
    return "; ".join(reasons) or None


def pickle_reason(filename: str) -> str:
    return f"{filename} is a pickle (it will be read safely and converted)"


def install(
    ctx: Context,
    ref: str,
    choice: Choice = Choice(),
    name: str | None = None,
    tags: tuple[str, ...] = (),
    dry_run: bool = False,
    confirm: Callable[[str], bool] = lambda reason: True,
    progress: Callable[[int], None] | None = None,
    on_remote: Callable[[RemoteFile], None] | None = None,
) -> InstallResult:
    """Install one ref. Nothing is registered unless the bytes match what the site published.

    Afterwards the staging folder holds only what an interrupted download needs to resume."""
    from hub.core.files import locked

    shared = _from_shared_registry(ctx, ref)
    if shared is not None:
        if shared["path"]:  # on this machine already
            return InstallResult("exists", {"source": "registry", "ref": ref}, shared)
        return _install_from_team(
            ctx, shared, choice, name, tags, dry_run, confirm, progress, on_remote
        )
    source, source_ref = pick_source(ctx, ref)
    remote = source.resolve(source_ref, choice)
    if on_remote is not None:
        on_remote(remote)
    if dry_run:
        return InstallResult("planned", remote.plan())
    known = _registered(ctx, remote.sha256)
    if known is not None:
        return InstallResult("exists", remote.plan(), known)
    reason = needs_confirmation(remote)
    if reason:
        _ask(confirm, reason)
    key = (
        remote.sha256.lower()
        if remote.sha256
        else hashlib.sha256(remote.url.split("?", 1)[0].encode()).hexdigest()
    )
    staging = ctx.store.root / ".incoming"
    staging.mkdir(parents=True, exist_ok=True)
    part = staging / f"dl-{key[:40]}.part"
    with locked(part.with_name(part.name + ".lock")):
        known = _registered(ctx, remote.sha256)  # another process may have finished it
        if known is not None:
            return InstallResult("exists", remote.plan(), known)
        if remote.files:
            staged = part.with_suffix(".folder")
            got = _download_folder(source, remote, staged, progress)
        else:
            staged = part
            got = _download(source, remote, part, progress, autov3_by_header(ctx, remote.kind))
            if remote.named_by_url and got.filename:
                remote = replace(remote, filename=got.filename)
        try:
            return _register(ctx, source, remote, got, name, tags, confirm)
        finally:  # registered (moved away), known already, or refused: nothing to keep
            _remove(staged)


def _from_shared_registry(ctx: Context, ref: str) -> dict[str, Any] | None:
    """The one artifact of the registry a ref names (``kind:name``, a name, a hash,
    ``tag:NAME``) when hub.toml names team servers ([sources.NAME]) to fetch it from; None
    for refs of share sites and URLs, or when the registry does not know it."""
    if not ctx.settings.named_sources:
        return None
    from hub.core.taxonomy import Ref
    from hub.registry.queries import list_artifacts, resolve_json

    head, sep, rest = ref.partition(":")
    with ctx.db.reader() as reader:
        if sep and head == "tag":
            found = list_artifacts(reader, tags=[rest])
            if len(found) > 1:
                from hub.core.errors import AmbiguousRefError

                raise AmbiguousRefError(ref, sorted(f"{a['kind']}:{a['name']}" for a in found))
            return found[0] if found else None
        try:
            Ref.parse(ref)
        except HubError:  # not a registry ref: civitai:ID, hf:..., a URL
            return None
        try:
            return resolve_json(reader, ref)
        except RefNotFoundError:
            return None


def _install_from_team(ctx: Context, artifact: dict[str, Any], *args: Any) -> InstallResult:
    """Fetch a registered artifact by SHA-256 from the first team server that serves it; the
    bytes become this machine's location of the same row."""
    sha256 = artifact["hashes"]["sha256"]
    if not sha256:
        raise HubError(f"{artifact['kind']}:{artifact['name']} is not hashed yet on its machine")
    reasons = []
    for team in ctx.settings.named_sources:
        try:
            return install(ctx, f"{team.name}:sha256:{sha256}", *args)
        except HubError as exc:
            reasons.append(f"{team.name} ({team.url}): {exc.message}")
    raise HubError(
        f"{artifact['kind']}:{artifact['name']} ({sha256[:10]}) is not on this machine and no "
        f"team server serves it: {'; '.join(reasons)}",
        hint="run `hub serve` on a machine that has it, listed as [sources.NAME] in hub.toml",
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _download_folder(
    source: Source, remote: RemoteFile, folder: Path, progress: Callable[[int], None] | None
) -> Any:
    """Each file of a folder verified on its own (resumable), then the folder hashed. After
    an interruption the files done and the partial one stay; after a refusal nothing does."""
    from hub.core.download import Downloaded, DownloadInterrupted
    from hub.core.hashing import hash_folder
    from hub.registry.store import safe_component

    root = folder / safe_component(remote.name)
    try:
        for relpath, url, size, sha256 in remote.files:
            parts = [safe_component(p) for p in relpath.split("/")]
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            got = _download(
                source,
                RemoteFile(remote.source, url, target.name, remote.name, size, sha256),
                part,
                progress,
                autov3=False,
            )
            got.path.replace(target)
        hashes, stat = hash_folder(root)
    except DownloadInterrupted:
        raise
    except Exception:
        _remove(folder)
        raise
    return Downloaded(root, hashes, stat.size, remote.name, 0)


def _download(
    source: Source,
    remote: RemoteFile,
    part: Path,
    progress: Callable[[int], None] | None,
    autov3: bool | Callable[[bytes], bool],
    attempts: int = 4,
) -> Any:
    """Download, resuming after dropped connections a bounded number of times."""
    from hub.core.download import DownloadInterrupted

    def fetch() -> Any:
        return source.download(remote, part, progress, autov3)

    for _ in range(attempts - 1):
        try:
            return fetch()
        except DownloadInterrupted:
            continue  # the part file and its ETag stay: the next request resumes
    return fetch()


def _registered(ctx: Context, sha256: str | None) -> dict[str, Any] | None:
    if not sha256:
        return None
    from hub.core.taxonomy import Ref
    from hub.registry.queries import resolve_rows, tags_for, to_json

    with ctx.db.reader() as reader:
        rows = [  # registered and on this machine (a shared registry knows others' files)
            r
            for r in resolve_rows(reader, Ref(sha256, hash_prefix=sha256.lower()))
            if r["sha256"] == sha256.lower() and r["path"]
        ]
        return (
            to_json(rows[0], tags_for(reader, [rows[0]["id"]]).get(rows[0]["id"], []))
            if rows
            else None
        )


def _register(
    ctx: Context,
    source: Source,
    remote: RemoteFile,
    got: Any,
    name: str | None,
    tags: tuple[str, ...],
    confirm: Callable[[str], bool],
) -> InstallResult:
    from hub.convert import ingest_pickle

    notes: list[str] = []
    ident = identify_path(ctx, got.path)
    if ident.format == "pickle" and not remote.pickle:  # the bytes say pickle; ask as for one
        _confirm_or_discard(confirm, pickle_reason(remote.filename), got.path)
    filename = safe_component(remote.filename, fallback=f"{remote.name}.safetensors")
    stem = safe_component(name or filename.rsplit(".", 1)[0])
    site_kind = remote.kind if ident.best.kind == "unknown" else None  # tensors decide first
    kind = site_kind or ident.best.kind
    if remote.base and ident.best.base not in ("unknown", remote.base):
        notes.append(
            f"{remote.source} says {remote.family} ({remote.base}); the file's tensors "
            f"say {ident.best.base}: the file wins"
        )
    overrides = Overrides(kind=site_kind, name=stem, tags=tags)
    sidecars = Sidecars(
        trained_words=remote.trained_words,
        description=remote.description,
        family=remote.family,
        version=remote.version,
        site_json=remote.site_json,
        tags=remote.tags,
        source_ref={
            "site": remote.source,
            **{k: v for k, v in remote.ids.items() if v},
            **({"verified": False} if remote.unverified else {}),
        },
    )
    if ident.format == "pickle":
        status, artifact, _ = ingest_pickle(
            ctx,
            got.path,
            ident,
            stem,
            str(kind),
            got.hashes.sha256,
            overrides,
            sidecars,
            source=remote.source,
        )
        notes.append(f"converted the pickle {got.hashes.sha256[:10]} to safetensors")
    else:
        if remote.files:
            filename = stem
        elif name:
            filename = stem + "." + filename.rsplit(".", 1)[-1] if "." in filename else stem
        status, artifact = commit(
            ctx,
            got.path,
            ident,
            got.hashes,
            got.size,
            overrides,
            sidecars,
            filename,
            source=remote.source,
        )
    if status in ("added", "located"):
        model = Path(artifact["path"])
        write_sidecars(
            model, remote.site_json, remote.description, remote.trained_words, artifact["base"]
        )
        preview = _fetch_preview(source, remote, model) if status == "added" else None
        if preview is not None:
            _set_preview(ctx, artifact["id"], preview)
            artifact["preview"] = str(preview)
        elif remote.preview_url:
            notes.append("the preview image could not be fetched")
    return InstallResult(status, remote.plan(), artifact, notes)


def _ask(confirm: Callable[[str], bool], reason: str) -> None:
    if not confirm(reason):
        raise HubError("install cancelled", hint="pass -y to skip the question")


def _confirm_or_discard(confirm: Callable[[str], bool], reason: str, path: Path) -> None:
    """Ask; on a no (or no way to ask), the downloaded file goes and the install stops."""
    try:
        _ask(confirm, reason)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _fetch_preview(source: Source, remote: RemoteFile, model: Path) -> Path | None:
    """One preview image beside the model, checked by Pillow (no decompression bombs)."""
    if not remote.preview_url:
        return None
    from PIL import Image

    try:
        resp = source.http.request("GET", remote.preview_url)
        if resp.status_code != 200 or len(resp.content) > MAX_PREVIEW_BYTES:
            return None
        import io

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(resp.content))
            image.verify()
        ext = {"PNG": ".png", "JPEG": ".jpeg", "WEBP": ".webp"}.get(image.format or "")
        if ext is None:
            return None
        stem = model.name if model.is_dir() else model.stem
        target = model.with_name(f"{stem}.preview{ext}")
        target.write_bytes(resp.content)
        return target
    except (
        HubError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ):
        return None


def _set_preview(ctx: Context, artifact_id: int, preview: Path) -> None:
    from hub.registry import writes

    with ctx.db.session() as session:
        writes.update(session, writes.get(session, artifact_id), {"preview": str(preview)})
