"""Families: which release line a model or add-on belongs to (SDXL 1.0, Pony, Illustrious,
SD 1.5 LCM...), with the evidence for it, and which add-ons fit which model.

The architecture (``base``) is what the tensors say; the family is not in the tensors. It is
decided from evidence, strongest first (docs/SHARE_SITES.md, "Base models"):

1. ``user``: ``hub set REF --family F`` (locked: later scans and identification keep it);
2. ``training-base``: kohya's ``ss_new_sd_model_hash`` / ``ss_sd_model_hash`` name the
   checkpoint a LoRA was trained on; a registered checkpoint (or one the share site knows by
   hash, from its stored answers) gives its family;
3. ``share-site``: the ``baseModel`` of the site's version JSON (install, identify, or a
   ``.civitai.info`` sidecar);
4. ``metadata``: ``ss_base_model_version``, ``ss_v2``, ``modelspec.architecture``, and
   ``ss_sd_model_name`` when it names a registered checkpoint;
5. ``known-hash``: a checkpoint that is a family's base release.

Nothing is read from file names; with no evidence the family is ``unknown``. Labels are the
site's, kept as given when unknown (never mapped by prefix). The tables come from plugins
(``register_families``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Any

from hub.plugins.families import FamilyTable

UNKNOWN = "unknown"
SOURCES = ("user", "training-base", "share-site", "metadata", "known-hash")
NO_LABEL = ("", "Other")  # the site's "no idea"


@cache
def tables() -> FamilyTable:
    """Every plugin's table merged (``accepts`` lists are joined)."""
    from hub.plugins import collect

    merged = FamilyTable()
    for reg in collect("register_families").values():
        t: FamilyTable = reg.value
        merged.labels.update(t.labels)
        merged.known_checkpoints.update({k.lower(): v for k, v in t.known_checkpoints.items()})
        merged.kohya_versions.update(t.kohya_versions)
        merged.modelspec_architectures.update(t.modelspec_architectures)
        for family, others in t.accepts.items():
            have = merged.accepts.get(family, ())
            merged.accepts[family] = have + tuple(o for o in others if o not in have)
    return merged


def normalize_label(text: str) -> str:
    """A family as the user typed it, in the site's spelling when it is a known label
    (case-insensitive); an unknown label is kept as given."""
    text = text.strip()
    for label in (*tables().labels, UNKNOWN):
        if label.lower() == text.lower():
            return label
    return text


# -- fit ------------------------------------------------------------------------------------


def accepted(model_family: str) -> tuple[str, ...]:
    """The add-on families a model of ``model_family`` takes: its own and the table's."""
    return (model_family, *tables().accepts.get(model_family, ()))


def family_fit(model_family: str | None, addon_family: str | None) -> str:
    """``same``, ``accepted`` (the model's family takes it), ``unknown`` (either side has
    no evidence: no claim either way) or ``mismatch``."""
    model_family, addon_family = model_family or UNKNOWN, addon_family or UNKNOWN
    if UNKNOWN in (model_family, addon_family):
        return "unknown"
    if model_family == addon_family:
        return "same"
    return "accepted" if addon_family in accepted(model_family) else "mismatch"


def why(art: Mapping[str, Any]) -> str:
    """The strongest evidence of an artifact's family, in a few words."""
    evidence = art.get("family_evidence") or []
    return f"{evidence[0]['source']}: {evidence[0]['detail']}" if evidence else "no evidence"


def mismatch_warning(model: Mapping[str, Any], addon: Mapping[str, Any]) -> str | None:
    """A one-line warning when an add-on's family does not fit the model's (None when it
    fits or either family is unknown)."""
    if family_fit(model.get("family"), addon.get("family")) != "mismatch":
        return None
    return (
        f"{addon['name']} is for {addon['family']} ({why(addon)}) but {model['name']} is "
        f"{model['family']} ({why(model)}); --allow-family silences this"
    )


def family_warnings(model: Mapping[str, Any], addons: Iterable[Mapping[str, Any]]) -> list[str]:
    """The mismatch warnings of the add-ons used with ``model`` (one per add-on)."""
    warnings = (mismatch_warning(model, a) for a in addons)
    return [w for w in warnings if w]


# -- evidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One thing that says which family an artifact is."""

    source: str  # one of SOURCES
    family: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "family": self.family, "detail": self.detail}


class TrainingBases:
    """Checkpoints a LoRA may name as its training base: the registered ones (by SHA-256,
    AutoV2, AutoV1, file name) and those the share site identified by SHA-256."""

    def __init__(self, rows: list[dict[str, Any]], site_versions: dict[str, dict[str, Any]]):
        self.by_hash: dict[str, dict[str, Any]] = {}
        self.by_file: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["kind"] not in ("checkpoint", "dreambooth"):
                continue
            for key in (row["sha256"], row["sha256"][:10], row["autov1"]):
                if key:
                    self.by_hash.setdefault(key.lower(), row)
            if row["path"]:  # None: only another machine has the file
                self.by_file.setdefault(PurePath(row["path"]).name.lower(), row)
                self.by_file.setdefault(PurePath(row["path"]).stem.lower(), row)
        self.site = site_versions  # lower-case SHA-256 -> version JSON

    def by_metadata_hash(self, header: Mapping[str, Any]) -> Evidence | None:
        """Evidence from ``ss_new_sd_model_hash`` (SHA-256) or ``ss_sd_model_hash`` (AutoV1,
        or AutoV2 from some trainers)."""
        for key in ("ss_new_sd_model_hash", "ss_sd_model_hash"):
            value = str(header.get(key) or "").strip().lower()
            if not value:
                continue
            row = self.by_hash.get(value) or self.by_hash.get(
                value[:10] if len(value) == 64 else ""
            )
            if row is not None and (row["family"] or UNKNOWN) != UNKNOWN:
                return Evidence(
                    "training-base",
                    row["family"],
                    f"{key} {value[:12]} is {row['kind']}:{row['name']}, family {row['family']}",
                )
            version = self.site.get(value)
            label = (version or {}).get("baseModel") or ""
            if label not in NO_LABEL:
                return Evidence(
                    "training-base",
                    label,
                    f"{key} {value[:12]} is civitai version {version.get('id')} "
                    f"({(version.get('model') or {}).get('name')}), baseModel '{label}'",
                )
        return None

    def by_name(self, header: Mapping[str, Any]) -> Evidence | None:
        """Evidence from ``ss_sd_model_name`` when it is a registered checkpoint's file."""
        name = str(header.get("ss_sd_model_name") or "").strip()
        row = self.by_file.get(PurePath(name.replace("\\", "/")).name.lower()) if name else None
        if row is None or (row["family"] or UNKNOWN) == UNKNOWN:
            return None
        return Evidence(
            "metadata",
            row["family"],
            f"ss_sd_model_name '{name}' is registered {row['kind']}:{row['name']} "
            f"({row['family']})",
        )


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def metadata_evidence(header: Mapping[str, Any]) -> list[Evidence]:
    """What the file's own metadata (kohya, ModelSpec) says."""
    t = tables()
    found = []
    version = str(header.get("ss_base_model_version") or "")
    if version in t.kohya_versions:
        found.append(
            Evidence("metadata", t.kohya_versions[version], f"ss_base_model_version = {version}")
        )
    elif str(header.get("ss_v2", "")).lower() == "true":
        v_pred = str(header.get("ss_v_parameterization", "")).lower() == "true"
        key = "sd_v2_v" if v_pred else "sd_v2"
        if key in t.kohya_versions:
            detail = "ss_v2 = True" + (", ss_v_parameterization = True" if v_pred else "")
            found.append(Evidence("metadata", t.kohya_versions[key], detail))
    arch = str(header.get("modelspec.architecture") or "")
    if arch.split("/", 1)[0] in t.modelspec_architectures:
        impl = header.get("modelspec.implementation")
        found.append(
            Evidence(
                "metadata",
                t.modelspec_architectures[arch.split("/", 1)[0]],
                f"modelspec.architecture = {arch}" + (f" ({impl})" if impl else ""),
            )
        )
    return found


def gather(
    row: Mapping[str, Any], bases: TrainingBases, header: Mapping[str, Any] | None = None
) -> list[Evidence]:
    """Every piece of evidence for a row of the artifact table, strongest first (``header``:
    its ``header_metadata`` already parsed)."""
    found: list[Evidence] = []
    if row["family_locked"] and row["family"]:
        found.append(Evidence("user", row["family"], "set with `hub set --family`"))
    if header is None:
        header = _loads(row["header_metadata"]) or {}
    header = header if isinstance(header, dict) else {}
    if row["kind"] not in ("checkpoint", "dreambooth"):
        base = bases.by_metadata_hash(header)
        if base is not None:
            found.append(base)
    site = _loads(row["site_json"]) or {}
    label = site.get("baseModel") if isinstance(site, dict) else None
    if isinstance(label, str) and label not in NO_LABEL:
        found.append(
            Evidence(
                "share-site",
                label,
                f"{row['source']} version {site.get('id')} says baseModel '{label}'",
            )
        )
    found += metadata_evidence(header)
    if row["kind"] not in ("checkpoint", "dreambooth"):
        named = bases.by_name(header)
        if named is not None:
            found.append(named)
    known = tables().known_checkpoints.get(row["sha256"].lower())
    if row["kind"] in ("checkpoint", "dreambooth") and known:
        found.append(Evidence("known-hash", known, f"SHA-256 is the {known} base release"))
    return sorted(found, key=lambda e: SOURCES.index(e.source))


# -- storing --------------------------------------------------------------------------------

ROW_FIELDS = (
    "id, kind, name, path, family, family_locked, family_evidence, header_metadata, "
    "site_json, source, sha256, autov1"
)


def _site_versions(session: Any) -> dict[str, dict[str, Any]]:
    rows = session.rows(
        "SELECT key, body FROM site_answer WHERE found = :t AND key LIKE 'sha256:%'", {"t": True}
    )
    out = {}
    for r in rows:
        body = _loads(r["body"])
        if isinstance(body, dict):
            out[r["key"].split(":", 1)[1].lower()] = body
    return out


CHECKPOINT_KINDS = ("checkpoint", "dreambooth")  # their own hash is evidence (known-hash)


def training_bases(session: Any) -> TrainingBases:
    """The training bases the registry knows now (its checkpoints, the site's answers)."""
    rows = session.rows(
        f"SELECT {ROW_FIELDS} FROM artifact WHERE kind IN ('checkpoint', 'dreambooth')"
    )
    return TrainingBases(rows, _site_versions(session))


def decide(
    row: Mapping[str, Any], bases: TrainingBases, header: Mapping[str, Any] | None = None
) -> tuple[str, str]:
    """(family, evidence JSON) of a row of the artifact table, as :func:`settle` stores them."""
    evidence = gather(row, bases, header)
    family = evidence[0].family if evidence else UNKNOWN
    return family, json.dumps([e.as_dict() for e in evidence])


def settle(db: Any, ids: Iterable[int] | None = None) -> int:
    """Decide (again) the family of the artifacts ``ids`` (every artifact when None) and of
    every add-on whose training base may have changed; store family and evidence. Locked
    families stay. Returns how many rows changed."""
    with db.session() as session:
        return settle_in(session, ids)


def unsettled(db: Any) -> list[int]:
    """The artifacts whose family was never decided (a scan stopped before it got there, or a
    checkpoint waiting for its hash)."""
    with db.reader() as reader:
        return [r["id"] for r in reader.rows("SELECT id FROM artifact WHERE family IS NULL")]


def _rows_to_settle(session: Any, wanted: set[int] | None) -> list[dict[str, Any]]:
    """Every row (``wanted`` None, or a checkpoint among them: add-ons trained on it may
    change), else the checkpoints (training bases) and the wanted rows."""
    everything = f"SELECT {ROW_FIELDS} FROM artifact ORDER BY id"
    if wanted is None:
        return session.rows(everything)
    params = {f"i{n}": i for n, i in enumerate(sorted(wanted))}
    marks = ", ".join(f":{k}" for k in params) or "NULL"
    rows = session.rows(
        f"SELECT {ROW_FIELDS} FROM artifact WHERE kind IN ('checkpoint', 'dreambooth') "
        f"OR id IN ({marks}) ORDER BY id",
        params,
    )
    if any(r["id"] in wanted and r["kind"] in ("checkpoint", "dreambooth") for r in rows):
        return session.rows(everything)
    return rows


def settle_in(session: Any, ids: Iterable[int] | None = None) -> int:
    """:func:`settle` inside the caller's write transaction."""
    wanted = None if ids is None else set(ids)
    rows = _rows_to_settle(session, wanted)
    bases = TrainingBases(rows, _site_versions(session))
    changed = 0
    # checkpoints first: the add-ons trained on them read their new family
    for row in sorted(rows, key=lambda r: r["kind"] not in ("checkpoint", "dreambooth")):
        is_addon = row["kind"] not in ("checkpoint", "dreambooth")
        if wanted is not None and row["id"] not in wanted and not is_addon:
            continue
        family, text = decide(row, bases)
        if (row["family"], row["family_evidence"]) == (family, text):
            continue
        session.execute(
            "UPDATE artifact SET family = :f, family_evidence = :e WHERE id = :id",
            {"f": family, "e": text, "id": row["id"]},
        )
        row["family"], row["family_evidence"] = family, text
        changed += 1
    return changed


def lock(db: Any, artifact_id: int, family: str | None) -> None:
    """Set an artifact's family by hand (``None`` or ``auto``: back to the evidence)."""
    with db.session() as session:
        session.execute(
            "UPDATE artifact SET family = :f, family_locked = :l WHERE id = :id",
            {"f": family or UNKNOWN, "l": family is not None, "id": artifact_id},
        )
        settle_in(session)


# -- queries --------------------------------------------------------------------------------


def fit_filters(model: Mapping[str, Any], family: str | None = None) -> tuple[str, Any]:
    """The base and :class:`hub.registry.queries.Filters` that keep the add-ons fitting
    ``model`` (an artifact's JSON): its base; its family, the families it accepts, and
    ``unknown`` (no claim), unless the model's own family is unknown. ``family`` narrows to
    one family."""
    from hub.core.taxonomy import ADDON_KINDS
    from hub.registry.queries import Filters

    own = model.get("family") or UNKNOWN
    families = None if own == UNKNOWN else (*accepted(own), UNKNOWN)
    if family is not None:
        families = (family,) if families is None or family in families else ()
    kinds = tuple(sorted(str(k) for k in ADDON_KINDS))
    return model["base"], Filters(families=families, kinds=kinds)


def fitting(reader: Any, model: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The registered add-ons that fit ``model``, grouped by kind, each with its ``fit``
    (``same``, ``accepted``, ``unknown``)."""
    from hub.registry.queries import list_artifacts

    base, filters = fit_filters(model)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for art in list_artifacts(reader, base=base, more=filters):
        art["fit"] = family_fit(model.get("family"), art["family"])
        grouped.setdefault(art["kind"], []).append(art)
    return grouped
