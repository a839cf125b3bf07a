"""Read queries: listing, full-text search, ref resolution, and the JSON view of artifacts.

Plain SQL with ``:name`` parameters through :class:`hub.registry.db.Reader`, so listing and
searching never load the ORM.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from hub.core.errors import AmbiguousRefError, RefNotFoundError
from hub.core.taxonomy import ADDON_KINDS, Ref
from hub.registry.db import Reader

COLUMNS = (
    "id, kind, name, version, base, family, format, layout, algo, variant, prediction, path, "
    "in_store, size, mtime_ns, inode, xxh3_128, sha256, autov1, autov3, blake3, hash_status, "
    "source, source_ref, trained_words, preferred_weight, description, preview, kind_locked, "
    "base_locked, created_at, updated_at"
)


def _loads(text: str | None, default: Any) -> Any:
    if not text or text == "[]":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def to_json(row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """The public JSON object of an artifact."""
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "version": row["version"],
        "base": row["base"],
        "family": row["family"],
        "format": row["format"],
        "layout": row["layout"],
        "algo": row["algo"],
        "variant": row["variant"],
        "prediction": row["prediction"],
        "path": row["path"],
        "in_store": bool(row["in_store"]),
        "size": row["size"],
        "hashes": {
            "xxh3_128": row["xxh3_128"],
            "sha256": row["sha256"],
            "autov1": row["autov1"],
            "autov2": row["sha256"][:10],
            "autov3": row["autov3"],
            "blake3": row["blake3"],
        },
        "hash_status": row["hash_status"],
        "tags": tags,
        "trained_words": _loads(row["trained_words"], []) or [],
        "preferred_weight": row["preferred_weight"],
        "description": row["description"],
        "preview": row["preview"],
        "source": (
            {"name": row["source"], **_loads(row["source_ref"], {})}
            if row["source_ref"]
            else {"name": row["source"]}
        ),
        "overrides": (
            [f for f in ("kind", "base") if row[f"{f}_locked"]]
            if row["kind_locked"] or row["base_locked"]
            else []
        ),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def tags_for(reader: Reader, ids: list[int] | None = None) -> dict[int, list[str]]:
    """Tag names per artifact id (all artifacts when ``ids`` is None)."""
    out: dict[int, list[str]] = defaultdict(list)
    if ids is None:
        rows = reader.rows("SELECT artifact_id, name FROM tag ORDER BY name")
    elif not ids:
        return out
    else:
        marks = ", ".join(f":i{n}" for n in range(len(ids)))
        rows = reader.rows(
            f"SELECT artifact_id, name FROM tag WHERE artifact_id IN ({marks}) ORDER BY name",
            {f"i{n}": i for n, i in enumerate(ids)},
        )
    for r in rows:
        out[r["artifact_id"]].append(r["name"])
    return out


def _filters(
    kind: str | None, base: str | None, tags: list[str] | None, params: dict[str, Any]
) -> str:
    clauses = []
    if kind:
        clauses.append("a.kind = :kind")
        params["kind"] = kind
    if base:
        clauses.append("a.base = :base")
        params["base"] = base
    for n, tag in enumerate(tags or []):
        clauses.append(
            f"EXISTS (SELECT 1 FROM tag t WHERE t.artifact_id = a.id AND t.name = :t{n})"
        )
        params[f"t{n}"] = tag.strip().lower()
    return " AND ".join(clauses) or "1=1"


def _with_tags(
    reader: Reader, rows: list[dict[str, Any]], all_rows: bool = False
) -> list[dict[str, Any]]:
    tags = tags_for(reader, None if all_rows else [r["id"] for r in rows])
    return [to_json(r, tags.get(r["id"], [])) for r in rows]


def list_artifacts(
    reader: Reader, kind: str | None = None, base: str | None = None, tags: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every artifact matching the filters, by kind then name."""
    params: dict[str, Any] = {}
    where = _filters(kind, base, tags, params)
    rows = reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE {where} "
        "ORDER BY a.kind, a.name COLLATE NOCASE, a.id",
        params,
    )
    return _with_tags(reader, rows, all_rows=not params)


_TERM = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """User text as an FTS5 query: every word quoted (no operators) and prefix-matched."""
    terms = _TERM.findall(text)
    return " ".join('"' + t.replace('"', '""') + '"*' for t in terms) or None


def search(
    reader: Reader,
    query: str,
    kind: str | None = None,
    base: str | None = None,
    tags: list[str] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Full-text search over name, tags, description and trained words, with filters."""
    params: dict[str, Any] = {"limit": limit}
    where = _filters(kind, base, tags, params)
    match = fts_query(query)
    if match is None and query.strip():
        return []  # punctuation only: nothing can match
    if match is None:
        rows = reader.rows(
            f"SELECT {COLUMNS} FROM artifact a WHERE {where} ORDER BY a.name LIMIT :limit", params
        )
    elif reader.has_fts:
        params["match"] = match
        rows = reader.rows(
            f"SELECT {', '.join('a.' + c.strip() for c in COLUMNS.split(','))} "
            "FROM artifact_fts f JOIN artifact a ON a.id = f.rowid "
            f"WHERE artifact_fts MATCH :match AND {where} ORDER BY bm25(artifact_fts) "
            "LIMIT :limit",
            params,
        )
    else:
        likes = []
        for n, term in enumerate(_TERM.findall(query)):
            params[f"q{n}"] = f"%{term.lower()}%"
            likes.append(
                f"(LOWER(a.name) LIKE :q{n} OR LOWER(COALESCE(a.description, '')) "
                f"LIKE :q{n} OR LOWER(a.trained_words) LIKE :q{n} OR EXISTS (SELECT 1 "
                f"FROM tag t WHERE t.artifact_id = a.id AND t.name LIKE :q{n}))"
            )
        rows = reader.rows(
            f"SELECT {COLUMNS} FROM artifact a WHERE {where} AND "
            f"{' AND '.join(likes)} ORDER BY a.name LIMIT :limit",
            params,
        )
    return _with_tags(reader, rows)


def _by_hash(reader: Reader, prefix: str) -> list[dict[str, Any]]:
    params = {"lo": prefix, "hi": prefix + "g"}
    return reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE (xxh3_128 >= :lo AND xxh3_128 < :hi) "
        "OR (sha256 >= :lo AND sha256 < :hi) OR (autov3 >= :lo AND autov3 < :hi)",
        params,
    )


# One exact rule per hash form (hub.plugins.imaging.HASH_FORMS): a value matches only the
# hash it is a form of, never a prefix of another one.
_FORM_SQL = {
    "sha256": "sha256 = :v",
    "autov1": "autov1 = :v",
    "autov2": "substr(sha256, 1, 10) = :v",
    "autov3": "(substr(autov3, 1, length(:v)) = :v AND length(:v) IN (12, 64)) "
    "OR (autov3 IS NULL AND substr(sha256, 1, 12) = :v)",
    "sha256_12": "substr(sha256, 1, 12) = :v",
    "blake3": "blake3 = :v",
}


def rows_by_hash_form(reader: Reader, form: str, value: str) -> list[dict[str, Any]]:
    """Artifacts whose hash of ``form`` (sha256, autov1, autov2, autov3, sha256_12, blake3)
    equals ``value``, among the hashes stored (AutoV3 and BLAKE3 may not be computed yet:
    :mod:`hub.registry.ondemand`). ``autov3`` follows A1111: a non-safetensors file (no
    AutoV3) is named by the first 12 hex of its SHA-256. An unknown form matches nothing."""
    if form not in _FORM_SQL:
        return []
    return reader.rows(f"SELECT {COLUMNS} FROM artifact a WHERE {_FORM_SQL[form]}", {"v": value})


def rows_by_source_version(reader: Reader, site: str, version_id: int) -> list[dict[str, Any]]:
    """Artifacts installed from ``site`` as that version id (``source_ref.version_id``)."""
    return reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE a.source = :site AND "
        "json_extract(a.source_ref, '$.version_id') = :vid",
        {"site": site, "vid": version_id},
    )


def display(row: dict[str, Any]) -> str:
    """``kind:name[@version] (autov2)``: how errors and reports name an artifact."""
    version = f"@{row['version']}" if row["version"] else ""
    return f"{row['kind']}:{row['name']}{version} ({row['sha256'][:10]})"


def resolve_rows(reader: Reader, ref: Ref) -> list[dict[str, Any]]:
    """Every artifact row a ref matches (no error on zero or several). A hash prefix that
    matches nothing may be the AutoV3 of a file registered without one: those of add-ons
    (of every file, for an ``autov3:`` ref) are computed and stored, and it is tried again."""
    if ref.hash_prefix:
        rows = _by_hash(reader, ref.hash_prefix)
        if not rows and reader.db is not None:
            from hub.registry import autov3

            if autov3.fill(reader.db, kinds=None if ref.scheme == "autov3" else ADDON_KINDS):
                rows = _by_hash(reader, ref.hash_prefix)
        if rows or ref.name is None:
            return rows
    params: dict[str, Any] = {"name": ref.name}
    sql = f"SELECT {COLUMNS} FROM artifact a WHERE a.name = :name COLLATE NOCASE"
    if ref.kind:
        sql += " AND a.kind = :kind"
        params["kind"] = ref.kind.value
    if ref.version:
        sql += " AND a.version = :version"
        params["version"] = ref.version
    return reader.rows(sql, params)


def resolve(reader: Reader, text: str, kind: str | None = None) -> dict[str, Any]:
    """The one artifact row a ref names; errors list the candidates when there are several.

    Every command resolves refs here. ``kind`` is the kind the caller expects: of several
    matches (a name shared by a LoRA and an embedding), those of that kind are kept."""
    ref = Ref.parse(text)
    rows = resolve_rows(reader, ref)
    if kind and len(rows) > 1:
        rows = [r for r in rows if r["kind"] == kind] or rows
    if not rows:
        raise RefNotFoundError(
            f"no artifact matches '{text}'", hint="see `hub list` or `hub search`"
        )
    if len(rows) > 1:
        raise AmbiguousRefError(text, sorted(display(r) for r in rows))
    return rows[0]


def resolve_json(reader: Reader, text: str, kind: str | None = None) -> dict[str, Any]:
    """The public JSON object of the artifact a ref names (see :func:`resolve`)."""
    row = resolve(reader, text, kind)
    return to_json(row, tags_for(reader, [row["id"]]).get(row["id"], []))


def lineage_of(reader: Reader, artifact_id: int) -> list[dict[str, Any]]:
    """Parents of an artifact, with the relation and its parameters."""
    rows = reader.rows(
        "SELECT l.relation, l.params, l.parent_sha256, p.kind AS kind, p.name AS name "
        "FROM lineage l LEFT JOIN artifact p ON p.id = l.parent_id WHERE l.child_id = :id",
        {"id": artifact_id},
    )
    return [{**r, "params": _loads(r["params"], {})} for r in rows]


def probe_record(reader: Reader, artifact_id: int) -> list[dict[str, Any]]:
    rows = reader.rows("SELECT probe_json FROM artifact WHERE id = :id", {"id": artifact_id})
    return _loads(rows[0]["probe_json"], []) if rows else []


def stat_index(reader: Reader) -> dict[str, tuple[int, int, int, int, str]]:
    """path -> (size, mtime_ns, inode, id, xxh3) for every artifact: what a scan compares."""
    return {
        r["path"]: (r["size"], r["mtime_ns"], r["inode"], r["id"], r["xxh3_128"])
        for r in reader.rows("SELECT path, size, mtime_ns, inode, id, xxh3_128 FROM artifact")
    }
