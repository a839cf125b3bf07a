"""Hashes computed when something asks for them, then kept in the registry: AutoV3 (a second
SHA-256 over nearly the whole file, computed in the pass for add-ons only) and BLAKE3 (which
InvokeAI names models by, ``blake3:<hex>``; never computed in the pass)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.core.errors import HubError
from hub.core.hashing import FileStat, autov3_of, blake3_of
from hub.registry.db import Database

# form -> (how to compute it from a path and its registered stat, which files have it)
FORMS: dict[str, tuple[Callable[[str, FileStat], str | None], str]] = {
    "autov3": (autov3_of, "format = 'safetensors'"),
    "blake3": (blake3_of, "format != 'diffusers'"),  # a file's hash; folders have none
}


def fill(
    db: Database,
    form: str,
    ids: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
) -> dict[int, str]:
    """Compute and store the ``form`` hash (a key of :data:`FORMS`) of the registered files
    that lack it (only ``ids``, only ``kinds`` when given); returns id -> hash of those
    filled. A file that is gone or changed since it was registered is left without one."""
    compute, has_it = FORMS[form]
    params: dict[str, object] = {}
    where = [f"{form} IS NULL", has_it]
    for column, values in (("id", ids), ("kind", kinds)):
        if values is not None:
            values = [v if isinstance(v, int) else str(v) for v in values]
            names = [f"{column}{n}" for n, _ in enumerate(values)]
            params |= dict(zip(names, values, strict=True))
            where.append(f"{column} IN ({', '.join(':' + n for n in names) or 'NULL'})")
    with db.reader() as reader:
        rows = reader.rows(
            f"SELECT id, path, size, mtime_ns, inode FROM artifact WHERE {' AND '.join(where)}",
            params,
        )
    filled = {}
    for row in rows:
        try:
            value = compute(row["path"], FileStat(row["size"], row["mtime_ns"], row["inode"]))
        except (OSError, HubError):
            continue
        if value is None:
            continue
        db.write(
            f"UPDATE artifact SET {form} = :v WHERE id = :id AND {form} IS NULL",
            {"v": value, "id": row["id"]},
        )
        filled[row["id"]] = value
    return filled
