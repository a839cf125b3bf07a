"""``hub outdated`` and ``hub update``: newer versions of installed share-site models, by the
rule of docs/SHARE_SITES.md section 6.

A newer version is one of the same model, published later (by ``publishedAt``: the site
lists versions in the creator's order, not newest first) and more than a day after the one
held (versions released together are variants of one release: inpainting, VAE or not,
fp16/fp32), of the same ``baseModelType``, base and family, with a file of the same kind,
and not held anywhere in the registry (by version id or by a file's SHA-256). Models are
asked for a hundred per request; a failed request is reported and the rest kept, and every
model answer is stored so that ``--offline`` compares with what was gathered last."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.managed_block import write_atomically
from hub.registry import answers
from hub.registry.queries import list_artifacts

SITE = "civitai"
RELEASE_WINDOW = timedelta(days=1)  # versions published this close are one release
WEIGHT_TYPES = ("Model", "Pruned Model")


@dataclass
class Outdated:
    """What ``hub outdated`` found, and what it could not ask."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0


def _published(version: dict[str, Any]) -> datetime | None:
    text = version.get("publishedAt") or ""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _file_kind(file: dict[str, Any]) -> str:
    kind = str(file.get("type") or "Model")
    return "weights" if kind in WEIGHT_TYPES else kind


def fetch_models(
    ctx: Context, model_ids: list[int], offline: bool = False
) -> tuple[dict[int, dict[str, Any]], list[str], int]:
    """Models by id: asked a hundred per request (unless ``offline``), stored, and for what
    could not be asked, the stored answers. Returns (models, errors, requests sent)."""
    from hub.core.civitai_tables import MODELS_PER_REQUEST
    from hub.remote import civitai

    ids = sorted(set(model_ids))
    models: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    requests = 0
    if not offline and ids:
        source = civitai(ctx)
        for i in range(0, len(ids), MODELS_PER_REQUEST):
            chunk = ids[i : i + MODELS_PER_REQUEST]
            requests += 1
            try:
                items = source.models_page(chunk)
            except HubError as exc:
                errors.append(f"models {chunk[0]}..{chunk[-1]}: {exc.message}")
                continue
            got = {int(m["id"]): m for m in items}
            models |= got
            answers.store(ctx.db, SITE, {f"model:{k}": v for k, v in got.items()})
    missing = [i for i in ids if i not in models]
    if missing:
        stored = answers.load(ctx.db, SITE, [f"model:{i}" for i in missing])
        for i in missing:
            found, body, _ = stored.get(f"model:{i}", (False, None, None))
            if found and body:
                models[i] = body
    return models, errors, requests


def _installed_version(art: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
    """The held version, from the model's list or (removed there) the stored version JSON."""
    mine = art["source"].get("version_id")
    for v in model.get("modelVersions") or []:
        if v.get("id") == mine:
            return v
    return art.get("_site_json")


def _held(version: dict[str, Any], held_versions: set[int], held_sha256: set[str]) -> bool:
    """Whether the registry holds a version: by its id, or by a file's SHA-256."""
    files = version.get("files") or []
    shas = {str((f.get("hashes") or {}).get("SHA256", "")).lower() for f in files}
    return version.get("id") in held_versions or bool(shas & held_sha256)


def _same_base(site_base: str, base: str) -> bool:
    """Whether a version's mapped base can be the held file's (unknown on either side: yes)."""
    return "unknown" in (site_base, base) or site_base == base


def newer_versions(
    art: dict[str, Any],
    model: dict[str, Any],
    held_versions: set[int],
    held_sha256: set[str],
) -> list[dict[str, Any]]:
    """The versions of ``model`` that update ``art`` (see the module docstring), newest
    first."""
    from hub.core.civitai_tables import map_base

    mine = _installed_version(art, model)
    when = _published(mine or {})
    if mine is None or when is None:
        return []
    file_id = art["source"].get("file_id")
    files = mine.get("files") or []
    held_file = next((f for f in files if f.get("id") == file_id), files[0] if files else {})
    kind = _file_kind(held_file)
    family = art["family"] if art["family"] != "unknown" else mine.get("baseModel")
    variant = mine.get("baseModelType") or "Standard"
    same_line = [
        v
        for v in model.get("modelVersions") or []
        if _published(v) is not None
        and v.get("baseModel") == family
        and (v.get("baseModelType") or "Standard") == variant
        and _same_base(map_base(v.get("baseModel"), v.get("baseModelType")), art["base"])
        and any(_file_kind(f) == kind for f in v.get("files") or [])
    ]
    held = [v for v in same_line if _held(v, held_versions, held_sha256)]
    newest_held = max([when, *(_published(v) for v in held)])
    found = [v for v in same_line if v not in held and _published(v) > newest_held + RELEASE_WINDOW]
    return sorted(found, key=lambda v: _published(v), reverse=True)


def _site_artifacts(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.reader() as reader:
        arts = list_artifacts(reader)
        site_json = {
            r["id"]: r["site_json"]
            for r in reader.rows("SELECT id, site_json FROM artifact WHERE site_json IS NOT NULL")
        }
    for a in arts:
        a["_site_json"] = json.loads(site_json[a["id"]]) if a["id"] in site_json else None
    return arts


def outdated(ctx: Context, offline: bool = False, ids: set[int] | None = None) -> Outdated:
    """Installed artifacts of the share site with a newer version (``ids``: only those)."""
    arts = _site_artifacts(ctx)
    held_versions = {a["source"].get("version_id") for a in arts if a["source"].get("version_id")}
    held_sha256 = {a["hashes"]["sha256"] for a in arts}
    mine = [
        a
        for a in arts
        if a["source"].get("site") == SITE
        and a["source"].get("model_id")
        and (ids is None or a["id"] in ids)
    ]
    models, errors, requests = fetch_models(
        ctx, [int(a["source"]["model_id"]) for a in mine], offline
    )
    report = Outdated(errors=errors, requests=requests)
    for art in mine:
        model = models.get(int(art["source"]["model_id"]))
        newer = newer_versions(art, model, held_versions, held_sha256) if model else []
        if newer:
            report.rows.append(
                {
                    "id": art["id"],
                    "sha256": art["hashes"]["sha256"],
                    "name": art["name"],
                    "kind": art["kind"],
                    "installed": art["version"],
                    "newest": newer[0].get("name"),
                    "published": newer[0].get("publishedAt"),
                    "ref": f"civitai:{model['id']}@{newer[0].get('id')}",
                    "family": art["family"],
                }
            )
    return report


# -- update ----------------------------------------------------------------------------------


@dataclass
class Updated:
    """One update: the old artifact, what was installed, and what moved or was removed."""

    old: dict[str, Any]
    ref: str
    status: str  # planned, added, exists
    new: dict[str, Any] | None = None
    moved: list[str] = field(default_factory=list)  # stack names whose reference moved
    removed: bool = False
    kept_because: str | None = None


def _stack_refs(path: Path | None) -> dict[str, list[str]]:
    """Every ref string of each ``[stacks.NAME]`` in hub.toml (weights included)."""
    if path is None or not path.is_file():
        return {}
    stacks = tomllib.loads(path.read_text(encoding="utf-8")).get("stacks") or {}
    out: dict[str, list[str]] = {}
    for name, table in stacks.items():
        if not isinstance(table, dict):
            continue
        values = [table.get("model"), table.get("vae")]
        for key in ("loras", "embeddings", "hypernetworks"):
            got = table.get(key) or []
            values += [got] if isinstance(got, str) else list(got)
        out[name] = [v for v in values if isinstance(v, str)]
    return out


def _points_at(ctx: Context, text: str, artifact_id: int) -> str | None:
    """The ref part of a stack value when it names ``artifact_id`` (None otherwise)."""
    from hub.merge import WeightedRef
    from hub.registry.queries import resolve

    ref = WeightedRef.parse(text).ref
    try:
        with ctx.db.reader() as reader:
            return ref if resolve(reader, ref)["id"] == artifact_id else None
    except HubError:
        return None


def move_stack_refs(ctx: Context, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Point every ``[stacks]`` value naming ``old`` at ``new`` (by SHA-256), in hub.toml's
    text (comments and layout kept). Returns the stack names changed."""
    path = ctx.settings.config_path
    moved: list[str] = []
    if path is None:
        return moved
    text = path.read_text(encoding="utf-8")
    for name, values in _stack_refs(path).items():
        for value in values:
            ref = _points_at(ctx, value, old["id"])
            if ref is None:
                continue
            replaced = f"sha256:{new['hashes']['sha256']}" + value[len(ref) :]
            text = re.sub(rf"([\"']){re.escape(value)}\1", rf"\g<1>{replaced}\g<1>", text)
            if name not in moved:
                moved.append(name)
    if moved:
        write_atomically(path, text)  # the user's hub.toml: whole, old or new, never half
    return moved


def references(ctx: Context, artifact: dict[str, Any]) -> str | None:
    """What still refers to an artifact (a stack, a merge made from it), or None."""
    for name, values in _stack_refs(ctx.settings.config_path).items():
        if any(_points_at(ctx, v, artifact["id"]) for v in values):
            return f"stack {name}"
    with ctx.db.reader() as reader:
        rows = reader.rows(
            "SELECT c.name FROM lineage l JOIN artifact c ON c.id = l.child_id "
            "WHERE l.parent_id = :id",
            {"id": artifact["id"]},
        )
    return f"{rows[0]['name']} was made from it" if rows else None


def update(
    ctx: Context,
    refs: list[str],
    everything: bool = False,
    dry_run: bool = False,
    replace: bool = False,
    confirm: Any = lambda reason: True,
) -> tuple[list[Updated], Outdated]:
    """Install the newer versions of ``refs`` (or of every outdated artifact with
    ``everything``). The old version stays unless ``replace``: then hub.toml's stacks move
    to the new one and the old one is removed if nothing else refers to it."""
    from hub.install import install
    from hub.manage import remove
    from hub.registry.queries import resolve

    if not refs and not everything:
        raise HubError("nothing to update", hint="name artifacts, or --all")
    ids = None
    if refs:
        with ctx.db.reader() as reader:
            ids = {resolve(reader, r)["id"] for r in refs}
    report = outdated(ctx, ids=ids)
    done = []
    for row in report.rows:
        old = {k: row[k] for k in ("id", "sha256", "name", "kind", "installed")}
        result = install(ctx, row["ref"], dry_run=dry_run, confirm=confirm)
        item = Updated(old, row["ref"], result.status, result.artifact)
        if replace and not dry_run and result.artifact is not None:
            item.moved = move_stack_refs(ctx, old, result.artifact)
            item.kept_because = references(ctx, old)
            if item.kept_because is None:
                remove(ctx, f"sha256:{old['sha256']}")
                item.removed = True
        done.append(item)
    return done, report
