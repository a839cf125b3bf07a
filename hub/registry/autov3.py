"""AutoV3 on demand: checkpoints and VAEs are registered without it (it is a second SHA-256
over nearly the whole file, which only add-ons need in the pass); whatever asks for it (a ref
by an AutoV3 prefix, ``Lora hashes``, a by-hash lookup) computes and stores it here."""

from __future__ import annotations

from collections.abc import Iterable

from hub.core.errors import HubError
from hub.core.hashing import FileStat, autov3_of
from hub.registry.db import Database


def fill(
    db: Database, ids: Iterable[int] | None = None, kinds: Iterable[str] | None = None
) -> dict[int, str]:
    """Compute and store the AutoV3 of the registered safetensors files that lack it (only
    ``ids``, only ``kinds`` when given); returns id -> AutoV3 of those filled. A file that is
    gone or changed since it was registered is left without one."""
    params: dict[str, object] = {}
    where = ["autov3 IS NULL", "format = 'safetensors'"]
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
            value = autov3_of(row["path"], FileStat(row["size"], row["mtime_ns"], row["inode"]))
        except (OSError, HubError):
            continue
        if value is None:
            continue
        db.write(
            "UPDATE artifact SET autov3 = :v WHERE id = :id AND autov3 IS NULL",
            {"v": value, "id": row["id"]},
        )
        filled[row["id"]] = value
    return filled
