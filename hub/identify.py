"""``hub identify``: local files linked to the share site by content, at library scale
(docs/SHARE_SITES.md section 6).

One ``POST /model-versions/by-hash/ids`` names the versions of up to 10,000 SHA-256s; the
models of the hits come a hundred per request with every version and file. Each answer is
stored as it arrives (:mod:`hub.registry.answers`), so a second run asks only for what the
first did not get, a "not found" is asked again after a week (or with ``refresh``), and
``offline`` reports from what is stored. A hit counts only when a file of the version has
the local SHA-256 and a size within 1 KiB of ``sizeKB * 1024``. A LoRA whose header was
edited (a metadata editor's ``ssmd_*`` keys; or named by the user) is looked up by AutoV3,
one throttled request each: such a match is a suggestion, never stored as identity."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core.errors import HubError
from hub.core.sidecars import write_sidecars
from hub.registry import answers, writes
from hub.registry.queries import list_artifacts, resolve_json

SITE = "civitai"
EDITOR_SIGN = "ssmd_"  # keys a safetensors metadata editor writes into a LoRA's header
THROTTLE_S = 0.5  # between one-by-one look-ups


@dataclass
class IdentifyReport:
    matched: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    unasked: list[str] = field(default_factory=list)  # offline, never asked
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def version_with_model(version: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """A version from a model's list in the shape by-hash returns (``modelId``, ``model``)."""
    keys = ("name", "type", "nsfw", "poi")
    return {**version, "modelId": model["id"], "model": {k: model.get(k) for k in keys}}


def verified_file(version: dict[str, Any], sha256: str, size: int) -> dict[str, Any] | None:
    """The file of ``version`` with this SHA-256 and a listed size within 1 KiB."""
    from hub.core.civitai_tables import SIZE_KB_SLACK

    for f in version.get("files") or []:
        if str((f.get("hashes") or {}).get("SHA256", "")).lower() != sha256.lower():
            continue
        size_kb = f.get("sizeKB")
        if isinstance(size_kb, int | float) and abs(size_kb * 1024 - size) <= SIZE_KB_SLACK:
            return f
    return None


def _edited(art: dict[str, Any], header: dict[str, Any] | None) -> bool:
    return art["kind"] == "lora" and any(str(k).startswith(EDITOR_SIGN) for k in header or {})


class Identifier:
    """One identify run: what to ask, asking it in bulk, storing and applying answers."""

    def __init__(
        self,
        ctx: Context,
        refresh: bool,
        offline: bool,
        progress: Callable[[int, int], None] | None,
        throttle: float,
    ) -> None:
        self.ctx = ctx
        self.refresh = refresh
        self.offline = offline
        self.progress = progress or (lambda done, total: None)
        self.throttle = throttle
        self.report = IdentifyReport()
        self._source: Any = None

    @property
    def source(self) -> Any:
        if self._source is None:
            from hub.remote import civitai

            self._source = civitai(self.ctx)
        return self._source

    def ask_hashes(self, shas: list[str]) -> None:
        """Bulk by-hash ids, then the hits' models; every answer stored as it comes."""
        from hub.core.civitai_tables import HASHES_PER_ID_REQUEST, MODELS_PER_REQUEST

        hits: dict[str, tuple[int, int]] = {}
        for i in range(0, len(shas), HASHES_PER_ID_REQUEST):
            chunk = shas[i : i + HASHES_PER_ID_REQUEST]
            self.report.requests += 1
            try:
                rows = self.source.version_ids_by_sha256(chunk)
            except HubError as exc:
                self.report.errors.append(f"by-hash look-up: {exc.message}")
                continue
            got = {
                str(r["hash"]).lower(): (int(r["modelId"]), int(r["modelVersionId"])) for r in rows
            }
            hits |= got
            answers.store(self.ctx.db, SITE, {f"sha256:{h}": None for h in chunk if h not in got})
        by_model: dict[int, list[tuple[str, int]]] = {}
        for sha, (model_id, version_id) in hits.items():
            by_model.setdefault(model_id, []).append((sha, version_id))
        model_ids = sorted(by_model)
        for i in range(0, len(model_ids), MODELS_PER_REQUEST):
            self._ask_models(model_ids[i : i + MODELS_PER_REQUEST], by_model)
            self.progress(min(i + MODELS_PER_REQUEST, len(model_ids)), len(model_ids))

    def _ask_models(self, chunk: list[int], by_model: dict[int, list[tuple[str, int]]]) -> None:
        self.report.requests += 1
        try:
            models = {int(m["id"]): m for m in self.source.models_page(chunk)}
        except HubError as exc:
            self.report.errors.append(f"models {chunk[0]}..{chunk[-1]}: {exc.message}")
            return
        found: dict[str, Any] = {f"model:{k}": v for k, v in models.items()}
        for model_id in chunk:
            model = models.get(model_id)
            for sha, version_id in by_model[model_id]:
                versions = (model or {}).get("modelVersions") or []
                version = next((v for v in versions if v.get("id") == version_id), None)
                if model is not None and version is not None:
                    full = version_with_model(version, model)
                    found[f"sha256:{sha}"] = full
                    found[f"version:{version_id}"] = full
        answers.store(self.ctx.db, SITE, found)

    def ask_autov3(self, arts: list[dict[str, Any]]) -> None:
        """One throttled look-up per AutoV3 not asked lately; stored."""
        for n, art in enumerate(arts):
            key = f"autov3:{art['hashes']['autov3'][:12].lower()}"
            if not self.refresh and answers.fresh(answers.load(self.ctx.db, SITE, [key]).get(key)):
                continue
            if n:
                time.sleep(self.throttle)
            self.report.requests += 1
            try:
                version = self.source.version_by_hash(art["hashes"]["autov3"][:12])
            except HubError as exc:
                self.report.errors.append(f"{art['name']}: {exc.message}")
                continue
            answers.store(self.ctx.db, SITE, {key: version})


def training_bases(arts: list[dict[str, Any]], headers: dict[int, Any]) -> list[str]:
    """``sha256:HEX`` keys of the checkpoints LoRAs name as their training base
    (``ss_new_sd_model_hash``) that are not registered: the site may know their family."""
    held = {a["hashes"]["sha256"] for a in arts}
    keys = set()
    for art in arts:
        value = str((headers.get(art["id"]) or {}).get("ss_new_sd_model_hash") or "").lower()
        if len(value) == 64 and value not in held and art["kind"] != "checkpoint":
            keys.add(f"sha256:{value}")
    return sorted(keys)


def _targets(ctx: Context, refs: list[str] | None) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    with ctx.db.reader() as reader:
        arts = [resolve_json(reader, r) for r in refs] if refs else list_artifacts(reader)
        headers = {
            r["id"]: json.loads(r["header_metadata"])
            for r in reader.rows(
                "SELECT id, header_metadata FROM artifact WHERE header_metadata IS NOT NULL"
            )
        }
    return [a for a in arts if a["format"] != "diffusers"], headers


def identify(
    ctx: Context,
    refs: list[str] | None = None,
    refresh: bool = False,
    offline: bool = False,
    progress: Callable[[int, int], None] | None = None,
    throttle: float = THROTTLE_S,
    sidecars: bool = True,
) -> IdentifyReport:
    """Identify registered files (``refs``, or all) on Civitai; see the module docstring.
    ``sidecars``: write ``.civitai.info`` and A1111's ``.json`` beside identified files."""
    if not offline:
        from hub.remote import civitai

        civitai(ctx)  # no Civitai source (its plugin disabled): say so before anything
    run = Identifier(ctx, refresh, offline, progress, throttle)
    arts, headers = _targets(ctx, refs)
    bases = training_bases(arts, headers)
    asked = [f"sha256:{a['hashes']['sha256']}" for a in arts] + bases
    stored = answers.load(ctx.db, SITE, asked)
    todo = [k.split(":", 1)[1] for k in asked if refresh or not answers.fresh(stored.get(k))]
    if todo and not offline:
        run.ask_hashes(sorted(set(todo)))
        stored = answers.load(ctx.db, SITE, asked)
    edited = [
        a
        for a in arts
        if a["hashes"]["autov3"]
        and (refs or _edited(a, headers.get(a["id"])))
        and not (stored.get(f"sha256:{a['hashes']['sha256']}") or (False,))[0]
    ]
    if edited and not offline:
        run.ask_autov3(edited)
    answered = any((stored.get(k) or (False,))[0] for k in bases) and bool(todo)
    _apply(ctx, run.report, arts, stored, edited, answered, sidecars)
    return run.report


def _apply(
    ctx: Context,
    report: IdentifyReport,
    arts: list[dict[str, Any]],
    stored: dict[str, Any],
    edited: list[dict[str, Any]],
    bases_answered: bool = False,
    sidecars: bool = True,
) -> None:
    """Store verified identities (one transaction), list the rest, decide families again."""
    from hub.families import settle

    hits = []
    for art in arts:
        answer = stored.get(f"sha256:{art['hashes']['sha256']}")
        if answer is None:
            report.unasked.append(art["path"])
        elif not answer[0]:
            report.unknown.append(art["path"])
        elif verified_file(answer[1], art["hashes"]["sha256"], art["size"]) is None:
            report.notes.append(f"{art['path']}: same SHA-256 but Civitai lists another size")
        else:
            hits.append((art, answer[1]))
    if _store_identities(ctx, report, hits, sidecars) or bases_answered:
        settle(ctx.db)
    _suggest(ctx, report, edited)


def _suggest(ctx: Context, report: IdentifyReport, edited: list[dict[str, Any]]) -> None:
    """AutoV3 matches of edited-header LoRAs, as suggestions only."""
    keys = [f"autov3:{a['hashes']['autov3'][:12].lower()}" for a in edited]
    by_v3 = answers.load(ctx.db, SITE, keys)
    for art, key in zip(edited, keys, strict=True):
        found, version, _ = by_v3.get(key, (False, None, None))
        if found and version:
            report.suggestions.append(
                {
                    "name": art["name"],
                    "path": art["path"],
                    "ref": f"civitai:{version.get('modelId')}@{version.get('id')}",
                    "model": (version.get("model") or {}).get("name"),
                    "version": version.get("name"),
                    "why": f"AutoV3 {key.split(':')[1]} matches; the SHA-256 does not "
                    "(an edited header): not stored as identity",
                }
            )


def _store_identities(
    ctx: Context,
    report: IdentifyReport,
    hits: list[tuple[dict[str, Any], dict[str, Any]]],
    sidecars: bool = True,
) -> int:
    """Write what the site says about each verified hit (one identified before is only
    listed), then their sidecars. Returns how many artifacts were written."""
    updates = []
    fresh = []
    for art, version in hits:
        if art["source"].get("version_id") == version.get("id"):  # identified before
            ref = {"site": SITE, **{k: v for k, v in art["source"].items() if k != "name"}}
            report.matched.append(
                {"name": art["name"], "path": art["path"], **ref, "version": art["version"]}
            )
        else:
            fresh.append((art, version))
    if not fresh:
        return 0
    from hub.remote import civitai

    source = civitai(ctx)
    models = answers.load(ctx.db, SITE, {f"model:{v.get('modelId')}" for _, v in fresh})
    for art, version in fresh:
        model = (models.get(f"model:{version.get('modelId')}") or (False, None))[1]
        remote = source.remote_for_version(version, art["hashes"]["sha256"], model)
        ref = {"site": SITE, **{k: v for k, v in remote.ids.items() if v}}
        report.matched.append(
            {"name": art["name"], "path": art["path"], **ref, "version": remote.version}
        )
        if remote.base not in (None, "unknown", art["base"]) and art["base"] != "unknown":
            report.notes.append(
                f"{art['name']}: Civitai says {remote.family} ({remote.base}); "
                f"the file's tensors say {art['base']}: the file wins"
            )
        values = {
            "trained_words": json.dumps(remote.trained_words),
            "version": remote.version,
            "source": SITE,
            "source_ref": json.dumps(ref),
            "site_json": json.dumps(version),
        }
        if remote.description:
            values["description"] = remote.description
        updates.append((art, version, remote, values))
    with ctx.db.session() as session:
        for art, _, remote, values in updates:
            row = writes.get(session, art["id"])
            writes.update(session, row, values)
            writes.add_tags(session, row, remote.tags, origin="site")
    for art, version, remote, _ in updates if sidecars else []:
        write_sidecars(
            Path(art["path"]), version, remote.description, remote.trained_words, art["base"]
        )
    return len(updates)
