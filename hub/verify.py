"""``hub verify``: re-hash registered files, and reconcile rows with the files in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.context import Context
from hub.core.errors import HubError
from hub.core.hashing import FileStat, hash_file, hash_folder
from hub.core.sidecars import PREVIEW_EXTS
from hub.register import Overrides, artifact_values, autov3_in_pass, identify_path
from hub.registry import writes
from hub.registry.queries import (
    PENDING,
    list_artifacts,
    location_index,
    locations_of,
    resolve_json,
)
from hub.registry.store import STAGING


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # bytes differ from the registered hash
    adopted: list[str] = field(default_factory=list)  # store files that had no row
    problems: list[tuple[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # registered by a scan, not yet hashed

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.problems)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "missing": self.missing,
            "changed": self.changed,
            "adopted": self.adopted,
            "problems": [{"path": p, "reason": r} for p, r in self.problems],
            "pending": self.pending,
        }


def verify(
    ctx: Context, refs: list[str] | None = None, progress: Callable[[str], None] | None = None
) -> VerifyReport:
    """Re-hash every location of the named artifacts (all when ``refs`` is empty) and record
    what changed; with no refs, also register store files left without a row by an
    interrupted import. A primary location that is gone or changed hands over to another
    location that still holds the bytes."""
    report = VerifyReport()
    with ctx.db.reader() as reader:
        targets = [resolve_json(reader, r) for r in refs] if refs else list_artifacts(reader)
        places = {a["id"]: [loc["path"] for loc in locations_of(reader, a["id"])] for a in targets}
    for art in targets:
        if art["hash_status"] == PENDING:
            report.pending.append(art["path"])
            continue
        found: dict[str, tuple[str, FileStat | None]] = {}
        for path in places[art["id"]] or [art["path"]]:
            if progress:
                progress(path)
            result = _check(Path(path), art["hashes"]["xxh3_128"], report)
            if result is not None:
                found[path] = result
        _record(ctx, art, found)
    if not refs:
        _adopt_orphans(ctx, report)
    return report


def _check(path: Path, xxh3: str, report: VerifyReport) -> tuple[str, FileStat | None] | None:
    """(status, stat) of one location: ok, missing or changed; None after a read problem."""
    try:
        hashes, fstat = hash_folder(path) if path.is_dir() else hash_file(path, autov3=False)
    except FileNotFoundError:
        report.missing.append(str(path))
        return "missing", None
    except (OSError, HubError) as exc:
        report.problems.append((str(path), str(exc)))
        return None
    status = "ok" if hashes.xxh3_128 == xxh3 else "changed"
    (report.ok if status == "ok" else report.changed).append(str(path))
    return status, fstat


def _record(ctx: Context, art: dict, found: dict[str, tuple[str, FileStat | None]]) -> None:
    """Write what the locations showed: their stats, the artifact's status, its primary."""
    if not found:
        return
    good = [p for p, (status, _) in found.items() if status == "ok"]
    primary = art["path"] if art["path"] in good or not good else good[0]
    status = found[primary][0] if primary in found else "missing"
    with ctx.db.session() as session:
        row = writes.get(session, art["id"])
        values: dict[str, object] = {"hash_status": status, "path": primary}
        fstat = found.get(primary, ("", None))[1]
        if status == "ok" and fstat is not None:
            values |= {"size": fstat.size, "mtime_ns": fstat.mtime_ns, "inode": fstat.inode}
        writes.update(session, row, values)
        for path in good:
            writes.put_location(session, row.id, writes.Place.of(path))


def _adopt_orphans(ctx: Context, report: VerifyReport) -> None:
    """Register files in the store folders that no row names (a crash between move and row)."""
    root = ctx.store.root
    if not root.is_dir():
        return
    with ctx.db.reader() as reader:
        known = set(location_index(reader)) | {a["path"] for a in list_artifacts(reader)}
    for folder in root.iterdir():
        if folder.name == STAGING or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if (
                str(entry) in known
                or entry.name.startswith(".")
                or entry.suffix.lower() in (*PREVIEW_EXTS, ".json", ".info")
            ):
                continue
            try:
                ident = identify_path(ctx, entry)
                if entry.is_dir():
                    hashes, fstat = hash_folder(entry)
                else:
                    hashes, fstat = hash_file(entry, autov3=autov3_in_pass(ident.best.kind))
            except (HubError, OSError) as exc:
                report.problems.append((str(entry), f"unregistered store file: {exc}"))
                continue
            with ctx.db.session() as session:
                if writes.find_by_hash(session, hashes.xxh3_128) is not None:
                    report.problems.append((str(entry), "unregistered copy of a registered file"))
                    continue
                writes.insert(
                    session,
                    artifact_values(entry, ident, hashes, fstat, Overrides(), in_store=True),
                    [],
                )
            report.adopted.append(str(entry))
