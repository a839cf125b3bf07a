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
from hub.install import sources
from hub.registry import writes
from hub.registry.queries import list_artifacts, resolve_json


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


@dataclass
class IdentifyReport:
    matched: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def identify(ctx: Context, refs: list[str] | None = None) -> IdentifyReport:
    """Look local artifacts up on Civitai by SHA-256 (bulk) and store what it says, with the
    model's tags, creator and description (as an install does); a hit must also match the
    file's size within what the site's listing allows. Sidecars are written beside each
    identified file."""
    source = civitai(ctx)
    with ctx.db.reader() as reader:
        arts = [resolve_json(reader, r) for r in refs] if refs else list_artifacts(reader)
    arts = [a for a in arts if a["format"] != "diffusers"]
    found = source.lookup_sha256([a["hashes"]["sha256"] for a in arts])
    models = source.models([int(v["modelId"]) for v in found.values() if v.get("modelId")])
    report = IdentifyReport()
    for art in arts:
        version = found.get(art["hashes"]["sha256"])
        if version is None:
            report.unknown.append(art["path"])
            continue
        model = models.get(int(version.get("modelId") or 0))
        remote = source.remote_for_version(version, art["hashes"]["sha256"], model)
        if remote.size is not None and abs(remote.size - art["size"]) > remote.size_slack:
            report.notes.append(f"{art['path']}: same SHA-256 but Civitai lists another size")
            continue
        if remote.base not in (None, "unknown", art["base"]) and art["base"] != "unknown":
            report.notes.append(
                f"{art['name']}: Civitai says {remote.family} ({remote.base}); "
                f"the file's tensors say {art['base']}: the file wins"
            )
        ref = {"site": "civitai", **{k: v for k, v in remote.ids.items() if v}}
        values = {
            "trained_words": json.dumps(remote.trained_words),
            "family": remote.family,
            "version": remote.version,
            "source": "civitai",
            "source_ref": json.dumps(ref),
            "site_json": json.dumps(version),
        }
        if remote.description:
            values["description"] = remote.description
        with ctx.db.session() as session:
            row = writes.get(session, art["id"])
            writes.update(session, row, values)
            writes.add_tags(session, row, remote.tags, origin="site")
        write_sidecars(
            Path(art["path"]), version, remote.description, remote.trained_words, art["base"]
        )
        report.matched.append(
            {"name": art["name"], "path": art["path"], **ref, "version": remote.version}
        )
    return report


def outdated(ctx: Context) -> list[dict[str, Any]]:
    """Installed Civitai artifacts with a newer version of the same model for the same base
    family. A version already in the registry, wherever its file is, counts as held."""
    with ctx.db.reader() as reader:
        arts = [
            a
            for a in list_artifacts(reader)
            if a["source"].get("site") == "civitai" and a["source"].get("model_id")
        ]
    held = {a["source"].get("version_id") for a in arts}
    models = civitai(ctx).models([int(a["source"]["model_id"]) for a in arts])
    out = []
    for art in arts:
        model = models.get(int(art["source"]["model_id"]))
        if model is None:
            continue
        versions = model.get("modelVersions") or []  # newest first
        ids = [v.get("id") for v in versions]
        mine = art["source"].get("version_id")
        newer = versions[: ids.index(mine)] if mine in ids else []
        newer = [
            v for v in newer if v.get("baseModel") == art["family"] and v.get("id") not in held
        ]
        if newer:
            out.append(
                {
                    "name": art["name"],
                    "kind": art["kind"],
                    "installed": art["version"],
                    "newest": newer[0].get("name"),
                    "ref": f"civitai:{model['id']}@{newer[0].get('id')}",
                    "family": art["family"],
                }
            )
    return out
