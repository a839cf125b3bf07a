"""Read queries: listing, full-text search, ref resolution, and the JSON view of artifacts.

Plain SQL with ``:name`` parameters through :class:`hub.registry.db.Reader`, so listing and
searching never load the ORM. The SQL is the subset SQLite and PostgreSQL share; the two places
where they differ (the full-text index, reading a JSON field) pick their form by
``reader.dialect``. Names compare and sort by ``lower(name)`` (a functional index on both).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.core.errors import AmbiguousRefError, RefNotFoundError
from hub.core.taxonomy import ADDON_KINDS, Ref
from hub.registry.db import LOCAL_PATH, Reader

PENDING = "pending"  # hash_status of a row registered from its header, hashes not yet known

FIELDS = [
    "id",
    "kind",
    "name",
    "version",
    "base",
    "family",
    "format",
    "layout",
    "algo",
    "variant",
    "prediction",
    "path",
    "in_store",
    "size",
    "mtime_ns",
    "inode",
    "xxh3_128",
    "sha256",
    "autov1",
    "autov3",
    "blake3",
    "hash_status",
    "source",
    "source_ref",
    "trained_words",
    "preferred_weight",
    "description",
    "preview",
    "kind_locked",
    "base_locked",
    "family_locked",
    "family_evidence",
    "created_at",
    "updated_at",
]
COLUMNS = ", ".join(LOCAL_PATH if c == "path" else f"a.{c}" for c in FIELDS)  # FROM artifact a
ALL_ROWS = 2**62  # a LIMIT no registry reaches
MAX_BOUND_IDS = 500  # ids bound in one IN (...) before tags are read in one scan instead


def _loads(text: str | None, default: Any) -> Any:
    if not text or text == "[]":
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def timestamp_text(value: Any) -> Any:
    """A timestamp as SQLite stores it, in UTC (PostgreSQL hands back a ``datetime``)."""
    if not isinstance(value, datetime):
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def to_json(row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """The public JSON object of an artifact (hashes None while they are pending)."""
    pending = row["hash_status"] == PENDING
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "version": row["version"],
        "base": row["base"],
        "family": row["family"] or "unknown",
        "family_evidence": _loads(row.get("family_evidence"), []),
        "format": row["format"],
        "layout": row["layout"],
        "algo": row["algo"],
        "variant": row["variant"],
        "prediction": row["prediction"],
        "path": row["path"],
        "in_store": bool(row["in_store"]),
        "size": row["size"],
        "hashes": (
            dict.fromkeys(("xxh3_128", "sha256", "autov1", "autov2", "autov3", "blake3"))
            if pending
            else {
                "xxh3_128": row["xxh3_128"],
                "sha256": row["sha256"],
                "autov1": row["autov1"],
                "autov2": row["sha256"][:10],
                "autov3": row["autov3"],
                "blake3": row["blake3"],
            }
        ),
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
        "overrides": [f for f in ("kind", "base", "family") if row.get(f"{f}_locked")],
        "created_at": timestamp_text(row["created_at"]),
        "updated_at": timestamp_text(row["updated_at"]),
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


@dataclass(frozen=True)
class Filters:
    """What ``list`` and ``search`` keep: kind, base, tags, and families (``families``: the
    family is one of them; ``kinds``: the kind is one of them)."""

    kind: str | None = None
    base: str | None = None
    tags: tuple[str, ...] = ()
    families: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None


def _in(column: str, values: tuple[str, ...], prefix: str, params: dict[str, Any]) -> str:
    marks = ", ".join(f":{prefix}{n}" for n in range(len(values))) or "NULL"
    params.update({f"{prefix}{n}": v for n, v in enumerate(values)})
    return f"{column} IN ({marks})"


def _filters(
    kind: str | None,
    base: str | None,
    tags: list[str] | None,
    params: dict[str, Any],
    more: Filters | None = None,
    *,
    any_of: dict[str, list[Any] | None] | None = None,
) -> str:
    """The WHERE clause of the filters; ``any_of`` maps a column (kind, base, id) to the
    values it may take (None: any)."""
    clauses = []
    for column, values in (any_of or {}).items():
        if values is not None:
            names = [f"{column}_{n}" for n in range(len(values))]
            params |= dict(zip(names, values, strict=True))
            clauses.append(f"a.{column} IN ({', '.join(':' + n for n in names) or 'NULL'})")
    if kind:
        clauses.append("a.kind = :kind")
        params["kind"] = kind
    if base:
        clauses.append("a.base = :base")
        params["base"] = base
    if more is not None and more.families is not None:
        clauses.append(_in("COALESCE(a.family, 'unknown')", more.families, "fam", params))
    if more is not None and more.kinds is not None:
        clauses.append(_in("a.kind", more.kinds, "kinds", params))
    for n, tag in enumerate(tags or []):
        clauses.append(
            f"EXISTS (SELECT 1 FROM tag t WHERE t.artifact_id = a.id AND t.name = :t{n})"
        )
        params[f"t{n}"] = tag.strip().lower()
    return " AND ".join(clauses) or "1=1"


def _with_tags(
    reader: Reader, rows: list[dict[str, Any]], all_rows: bool = False
) -> list[dict[str, Any]]:
    # past a few hundred ids, one scan of the tag table beats a statement with that many
    # parameters (tens of thousands for `list --kind lora` of a large registry)
    many = len(rows) > MAX_BOUND_IDS
    tags = tags_for(reader, None if all_rows or many else [r["id"] for r in rows])
    return [to_json(r, tags.get(r["id"], [])) for r in rows]


def list_artifacts(
    reader: Reader,
    kind: str | None = None,
    base: str | None = None,
    tags: list[str] | None = None,
    more: Filters | None = None,
) -> list[dict[str, Any]]:
    """Every artifact matching the filters, by kind then name."""
    params: dict[str, Any] = {}
    where = _filters(kind, base, tags, params, more)
    rows = reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE {where} ORDER BY a.kind, lower(a.name), a.id",
        params,
    )
    return _with_tags(reader, rows, all_rows=not params)


def _json_or(column: str, default: str) -> str:
    """SQL for a column holding JSON text, as JSON (``default`` when it is not valid JSON)."""
    return f"json(CASE WHEN json_valid({column}) THEN {column} ELSE '{default}' END)"


_NULL_HASHES = ", ".join(
    f"'{h}', NULL" for h in ("xxh3_128", "sha256", "autov1", "autov2", "autov3", "blake3")
)
# :func:`to_json` as SQLite's JSON functions build it, one text per row: `hub list --json` of
# tens of thousands of artifacts with no Python object per row (same keys in the same order,
# same values once parsed; tests/test_scan_library.py compares the two).
_JSON_OBJECT_SQL = (
    "json_object('id', a.id, 'name', a.name, 'kind', a.kind, 'version', a.version, "
    "'base', a.base, 'family', COALESCE(NULLIF(a.family, ''), 'unknown'), "
    f"'family_evidence', {_json_or('a.family_evidence', '[]')}, "
    "'format', a.format, 'layout', a.layout, 'algo', a.algo, 'variant', a.variant, "
    "'prediction', a.prediction, 'path', a.path, "
    "'in_store', json(CASE WHEN a.in_store THEN 'true' ELSE 'false' END), 'size', a.size, "
    f"'hashes', CASE WHEN a.hash_status = '{PENDING}' THEN json_object({_NULL_HASHES}) "
    "ELSE json_object('xxh3_128', a.xxh3_128, 'sha256', a.sha256, 'autov1', a.autov1, "
    "'autov2', substr(a.sha256, 1, 10), 'autov3', a.autov3, 'blake3', a.blake3) END, "
    "'hash_status', a.hash_status, "
    "'tags', (SELECT json_group_array(name) FROM "
    "(SELECT t.name FROM tag t WHERE t.artifact_id = a.id ORDER BY t.name)), "
    f"'trained_words', {_json_or('a.trained_words', '[]')}, "
    "'preferred_weight', a.preferred_weight, 'description', a.description, "
    "'preview', a.preview, "
    "'source', CASE WHEN json_type(a.source_ref) = 'object' "
    "THEN json_insert(a.source_ref, '$.name', a.source) ELSE json_object('name', a.source) END, "
    "'overrides', json('[' || substr("
    "CASE WHEN a.kind_locked THEN ',\"kind\"' ELSE '' END || "
    "CASE WHEN a.base_locked THEN ',\"base\"' ELSE '' END || "
    "CASE WHEN a.family_locked THEN ',\"family\"' ELSE '' END, 2) || ']'), "
    "'created_at', a.created_at, 'updated_at', a.updated_at)"
)


def list_json(
    reader: Reader,
    kind: str | None = None,
    base: str | None = None,
    tags: list[str] | None = None,
    more: Filters | None = None,
) -> str:
    """:func:`list_artifacts` as JSON text (a list of :func:`to_json` objects): on SQLite
    built by the database while no other machine shares the registry (``path`` is then
    ``a.path``), elsewhere by ``json.dumps``."""
    if reader.dialect != "sqlite" or reader.shared_now():
        return json.dumps(list_artifacts(reader, kind, base, tags, more), default=str)
    params: dict[str, Any] = {}
    where = _filters(kind, base, tags, params, more)
    rows = reader.values(
        f"SELECT {_JSON_OBJECT_SQL} FROM artifact a WHERE {where} "
        "ORDER BY a.kind, lower(a.name), a.id",
        params,
    )
    return "[" + ", ".join(rows) + "]"


_TERM = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """User text as an FTS5 query: every word quoted (no operators) and prefix-matched."""
    terms = _TERM.findall(text)
    return " ".join('"' + t.replace('"', '""') + '"*' for t in terms) or None


def search_text(text: str) -> str:
    """Text as the PostgreSQL index holds it: lower case, diacritics removed (what FTS5's
    ``unicode61 remove_diacritics 2`` tokenizer does on SQLite)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tsquery(text: str) -> str | None:
    """User text as a PostgreSQL ``to_tsquery`` string with FTS5's meaning: every word
    prefix-matched, all of them required, no operators."""
    terms = _TERM.findall(search_text(text))
    return " & ".join(f"'{t}':*" for t in terms) or None


# Full-text search per engine, best first: FTS5's bm25 on SQLite, ts_rank normalised by
# document length (as bm25 is) on PostgreSQL; ties by name then id on both. The ranking picks
# the page's ids (the GIN or FTS5 index finds the matches; only ids and sort keys are sorted);
# the page's rows alone are then read whole.
_RANKED_IDS = {
    "sqlite": "SELECT a.id AS id, bm25(artifact_fts) AS score, lower(a.name) AS lname "
    "FROM artifact_fts f JOIN artifact a ON a.id = f.rowid "
    "WHERE artifact_fts MATCH :match AND {where} "
    "ORDER BY score, lname, a.id LIMIT :limit OFFSET :skip",
    "postgresql": "SELECT a.id AS id, -ts_rank(s.doc, to_tsquery('simple', :match), 1) AS score, "
    "lower(a.name) AS lname FROM artifact_search s JOIN artifact a ON a.id = s.artifact_id "
    "WHERE s.doc @@ to_tsquery('simple', :match) AND {where} "
    "ORDER BY score, lname, a.id LIMIT :limit OFFSET :skip",
}


def _search_sql(dialect: str, where: str) -> str:
    ranked = _RANKED_IDS[dialect].format(where=where)
    return (
        f"SELECT {COLUMNS} FROM ({ranked}) p JOIN artifact a ON a.id = p.id "
        "ORDER BY p.score, p.lname, p.id"
    )


def search(
    reader: Reader,
    query: str,
    kind: str | None = None,
    base: str | None = None,
    tags: list[str] | None = None,
    limit: int = 50,
    more: Filters | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Full-text search over name, tags, description and trained words, with filters: the
    ``limit`` results after the first ``offset`` (paging is SQL's: LIMIT and OFFSET)."""
    params: dict[str, Any] = {"limit": limit, "skip": offset}
    where = _filters(kind, base, tags, params, more)
    match = fts_query(query)
    if match is None and query.strip():
        return []  # punctuation only: nothing can match
    if match is None:
        rows = reader.rows(
            f"SELECT {COLUMNS} FROM artifact a WHERE {where} "
            "ORDER BY lower(a.name), a.id LIMIT :limit OFFSET :skip",
            params,
        )
    else:
        params["match"] = match if reader.dialect == "sqlite" else tsquery(query)
        rows = reader.rows(_search_sql(reader.dialect, where), params)
    return _with_tags(reader, rows)


def page(
    reader: Reader,
    *,
    any_of: dict[str, list[Any] | None] | None = None,
    tag: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """One page of artifacts by id, those after id ``after`` (keyset), filtered and cut in
    SQL (what ``hub serve`` pages through without a query)."""
    params: dict[str, Any] = {"limit": limit, "after": after}
    where = _filters(None, None, [tag] if tag else None, params, any_of=any_of)
    sql = f"SELECT {COLUMNS} FROM artifact a WHERE {where} AND a.id > :after "
    return _with_tags(reader, reader.rows(sql + "ORDER BY a.id LIMIT :limit", params))


def ranked_ids(
    reader: Reader,
    query: str,
    *,
    any_of: dict[str, list[Any] | None] | None = None,
    tag: str | None = None,
) -> list[int]:
    """The id of every artifact a search matches, best first (as :func:`search` ranks):
    what ``hub serve`` keeps to cut any page of a search from."""
    params: dict[str, Any] = {"limit": ALL_ROWS, "skip": 0}
    where = _filters(None, None, [tag] if tag else None, params, any_of=any_of)
    match = fts_query(query)
    if match is None:
        return []
    params["match"] = match if reader.dialect == "sqlite" else tsquery(query)
    return [r["id"] for r in reader.rows(_RANKED_IDS[reader.dialect].format(where=where), params)]


def rows_by_ids(reader: Reader, ids: list[int]) -> list[dict[str, Any]]:
    """The artifacts with these ids, in that order (ids no longer registered are skipped)."""
    marks = {f"i{n}": i for n, i in enumerate(ids)}
    if not marks:
        return []
    rows = reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE a.id IN ({', '.join(':' + m for m in marks)})",
        marks,
    )
    by_id = {r["id"]: r for r in _with_tags(reader, rows)}
    return [by_id[i] for i in ids if i in by_id]


def rows_by_published_hash(reader: Reader, value: str) -> list[dict[str, Any]]:
    """Artifacts one of whose published hashes (SHA-256, AutoV2, AutoV3, AutoV1; lower case)
    equals ``value``, by id."""
    rows = reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE sha256 = :v OR substr(sha256, 1, 10) = :v "
        "OR substr(autov3, 1, 12) = :v OR autov1 = :v ORDER BY id",
        {"v": value},
    )
    return _with_tags(reader, rows)


def rows_by_sha256(reader: Reader, hashes: list[str]) -> list[dict[str, Any]]:
    """Artifacts whose SHA-256 is one of ``hashes`` (lower case), in one query, by id."""
    marks = {f"h{n}": h for n, h in enumerate(hashes)}
    if not marks:
        return []
    rows = reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE sha256 IN "
        f"({', '.join(':' + m for m in marks)}) ORDER BY id",
        marks,
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
    version = {
        "sqlite": "CAST(json_extract(a.source_ref, '$.version_id') AS TEXT)",
        "postgresql": "(CAST(a.source_ref AS JSONB) ->> 'version_id')",
    }[reader.dialect]
    return reader.rows(
        f"SELECT {COLUMNS} FROM artifact a WHERE a.source = :site AND {version} = :vid",
        {"site": site, "vid": str(version_id)},
    )


def display(row: dict[str, Any]) -> str:
    """``kind:name[@version] (autov2)``: how errors and reports name an artifact."""
    version = f"@{row['version']}" if row["version"] else ""
    return f"{row['kind']}:{row['name']}{version} ({row['sha256'][:10] or 'hash pending'})"


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
    sql = f"SELECT {COLUMNS} FROM artifact a WHERE lower(a.name) = lower(:name)"
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


def here(art: dict[str, Any]) -> dict[str, Any]:
    """The artifact (its public JSON), when its file is on this machine; a registry shared by
    several machines also knows files only others hold: those are a one-line error saying how
    to fetch them."""
    if not art["path"]:
        sha = art["hashes"]["sha256"] or ""
        raise RefNotFoundError(
            f"{art['kind']}:{art['name']} is registered by another machine; its file is not here",
            hint=f"fetch it from a team server: hub install sha256:{sha}",
        )
    return art


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


def locations_of(reader: Reader, artifact_id: int) -> list[dict[str, Any]]:
    """Every place on this machine an artifact's bytes are, the primary one
    (``artifact.path``) first."""
    rows = reader.rows(
        "SELECT l.path, l.device, l.inode, l.size, l.mtime_ns, l.root, l.created_by_hub, "
        "l.seen_at, CASE WHEN l.path = a.path THEN 1 ELSE 0 END AS is_primary "
        "FROM location l JOIN artifact a ON a.id = l.artifact_id "
        "WHERE l.artifact_id = :id AND l.machine = :machine ORDER BY is_primary DESC, l.id",
        {"id": artifact_id},
    )
    return [
        {**r, "created_by_hub": bool(r["created_by_hub"]), "primary": bool(r.pop("is_primary"))}
        for r in rows
    ]


def location_index(reader: Reader) -> dict[str, tuple[int, int, int, int, str, str | None]]:
    """path -> (size, mtime_ns, inode, artifact id, hash status, kind) for every location:
    what a scan compares a file's ``stat`` with (this machine's locations). The kind is given
    for pending rows only, and the status says pending or ``ok``: both come from the index of
    hashes (a pending row's placeholder hash starts with ``pending:``), not from a read of
    every artifact row."""
    pending = dict(
        reader.tuples(
            "SELECT id, kind FROM artifact WHERE xxh3_128 >= :lo AND xxh3_128 < :hi",
            {"lo": f"{PENDING}:", "hi": f"{PENDING};"},
        )
    )
    rows = reader.tuples(
        "SELECT path, size, mtime_ns, inode, artifact_id FROM location WHERE machine = :machine"
    )
    return {
        path: (size, mtime_ns, inode, aid, PENDING if aid in pending else "ok", pending.get(aid))
        for path, size, mtime_ns, inode, aid in rows
    }
