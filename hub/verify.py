"""``hub verify``: re-hash registered files, and reconcile rows with the files in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.context import Context
from hub.core.errors import HubError
from hub.core.hashing import hash_file, hash_folder
from hub.core.sidecars import PREVIEW_EXTS
from hub.register import Overrides, artifact_values, autov3_in_pass, identify_path
from hub.registry import writes
from hub.registry.queries import list_artifacts, resolve_json
from hub.registry.store import STAGING


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # bytes differ from the registered hash
    adopted: list[str] = field(default_factory=list)  # store files that had no row
    problems: list[tuple[str, str]] = field(default_factory=list)

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
        }


def verify(
    ctx: Context, refs: list[str] | None = None, progress: Callable[[str], None] | None = None
) -> VerifyReport:
    """Re-hash the named artifacts (all when ``refs`` is empty) and record what changed; with
    no refs, also register store files left without a row by an interrupted import."""
    report = VerifyReport()
    with ctx.db.reader() as reader:
        targets = [resolve_json(reader, r) for r in refs] if refs else list_artifacts(reader)
    for art in targets:
        path = Path(art["path"])
        if progress:
            progress(str(path))
        status = "ok"
        try:
            hashes, fstat = hash_folder(path) if path.is_dir() else hash_file(path, autov3=False)
        except FileNotFoundError:
            status, fstat = "missing", None
        except (OSError, HubError) as exc:
            report.problems.append((str(path), str(exc)))
            continue
        if status == "ok" and hashes.xxh3_128 != art["hashes"]["xxh3_128"]:
            status = "changed"
        {"ok": report.ok, "missing": report.missing, "changed": report.changed}[status].append(
            str(path)
        )
        with ctx.db.session() as session:
            row = writes.get(session, art["id"])
            values: dict[str, object] = {"hash_status": status}
            if status == "ok" and fstat is not None:
                values |= {"size": fstat.size, "mtime_ns": fstat.mtime_ns, "inode": fstat.inode}
            writes.update(session, row, values)
    if not refs:
        _adopt_orphans(ctx, report)
    return report


def _adopt_orphans(ctx: Context, report: VerifyReport) -> None:
    """Register files in the store folders that no row names (a crash between move and row)."""
    root = ctx.store.root
    if not root.is_dir():
        return
    with ctx.db.reader() as reader:
        known = {a["path"] for a in list_artifacts(reader)}
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
