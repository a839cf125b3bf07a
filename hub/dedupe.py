"""``hub dedupe``: identical files on one file system become hard links to one copy.

Identical means the same size and SHA-256, then the same bytes compared one by one. Each
replacement is atomic: a hard link to the kept copy is made under a temporary name in the
duplicate's folder, then renamed over the duplicate, so at every instant the path holds
either its old bytes or the (identical) kept ones. A file whose size, mtime or inode changed
since it was hashed is skipped.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.context import Context
from hub.core.errors import HubError

TEMP_PREFIX = ".sdhub-dedupe-"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Seen:
    """A file as stat said when it was hashed."""

    path: Path
    device: int
    inode: int
    size: int
    mtime_ns: int
    nlink: int
    owner: tuple[int, int, int]  # uid, gid, permission bits: a link shares them

    @classmethod
    def of(cls, path: Path) -> Seen:
        st = os.lstat(path)
        owner = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_nlink, owner)

    def unchanged(self) -> bool:
        try:
            now = Seen.of(self.path)
        except OSError:
            return False
        return (now.device, now.inode, now.size, now.mtime_ns) == (
            self.device,
            self.inode,
            self.size,
            self.mtime_ns,
        )


@dataclass
class DedupeReport:
    """What ``hub dedupe`` found and did."""

    files: int = 0
    groups: int = 0  # sets of identical files (distinct inodes) on one file system
    replaced: list[dict[str, str]] = field(default_factory=list)  # path, kept
    skipped: list[dict[str, str]] = field(default_factory=list)  # path, reason
    reclaimed: int = 0  # bytes freed (a file's last name replaced)
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "groups": self.groups,
            "replaced": self.replaced,
            "skipped": self.skipped,
            "bytes_reclaimed": self.reclaimed,
            "dry_run": self.dry_run,
        }


def walk_files(roots: Iterable[Path], clean: bool = True) -> Iterator[Path]:
    """Regular files under ``roots`` (files or folders); symlinks are not followed, and
    leftovers of a killed run (:data:`TEMP_PREFIX`) are skipped (removed when ``clean``)."""
    for root in roots:
        if root.is_symlink() or root.is_file():
            if root.is_file() and not root.is_symlink():
                if clean:  # a killed run's temporary link of this very file
                    for left in root.parent.glob(f"{TEMP_PREFIX}*-{glob.escape(root.name)}"):
                        left.unlink(missing_ok=True)
                yield root
            continue
        if not root.is_dir():
            raise HubError(f"{root}: no such file or folder")
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                if name.startswith(TEMP_PREFIX):
                    if clean:
                        path.unlink(missing_ok=True)
                elif not path.is_symlink() and path.is_file():
                    yield path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes, compared chunk by chunk."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _candidates(paths: list[Path]) -> list[list[Seen]]:
    """Files sharing a file system and a size with another inode: the only ones to hash."""
    by_size: dict[tuple[int, int], list[Seen]] = defaultdict(list)
    for path in paths:
        try:
            seen = Seen.of(path)
        except OSError:
            continue
        if seen.size > 0:
            by_size[(seen.device, seen.size)].append(seen)
    return [g for g in by_size.values() if len({s.inode for s in g}) > 1]


def find_duplicates(
    paths: list[Path],
    on_hashed: Callable[[Path, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[list[list[Seen]]]:
    """Groups of identical content: per group, the inodes (each a list of its paths).
    ``on_total`` hears how many bytes will be hashed, ``on_hashed`` each file hashed."""
    groups = []
    candidates = _candidates(paths)
    if on_total:
        on_total(sum(s.size for g in candidates for s in {s.inode: s for s in g}.values()))
    for same_size in candidates:
        by_hash: dict[str, dict[int, list[Seen]]] = defaultdict(lambda: defaultdict(list))
        hashed: dict[int, str] = {}
        for seen in same_size:
            if seen.inode not in hashed:
                hashed[seen.inode] = sha256_of(seen.path)
                if on_hashed:
                    on_hashed(seen.path, seen.size)
            by_hash[hashed[seen.inode]][seen.inode].append(seen)
        groups += [list(inodes.values()) for inodes in by_hash.values() if len(inodes) > 1]
    return groups


def _keeper(inodes: list[list[Seen]]) -> list[Seen]:
    """The copy to keep: the inode with the most names, then the oldest, then by path."""
    return min(inodes, key=lambda names: (-names[0].nlink, names[0].mtime_ns, str(names[0].path)))


def replace_with_link(kept: Path, dup: Seen) -> str | None:
    """Make ``dup.path`` a hard link of ``kept``, atomically; why not, or None when done."""
    tmp = dup.path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{dup.path.name}"[:255])
    try:
        os.link(kept, tmp)
    except OSError as exc:
        return f"cannot hard-link here: {exc.strerror}"
    try:
        if not dup.unchanged():  # the last look before the rename
            return "changed since it was hashed"
        os.replace(tmp, dup.path)
    finally:
        tmp.unlink(missing_ok=True)
    return None


def dedupe(
    roots: list[Path],
    dry_run: bool = False,
    on_hashed: Callable[[Path, int], None] | None = None,
    on_replaced: Callable[[Path], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DedupeReport:
    """Hard-link identical files under ``roots`` to one copy (see the module docstring)."""
    paths = sorted(set(walk_files(roots, clean=not dry_run)))
    report = DedupeReport(files=len(paths), dry_run=dry_run)
    groups = find_duplicates(paths, on_hashed, on_total)
    report.groups = len(groups)
    for inodes in groups:
        keep = _keeper(inodes)
        for names in inodes:
            if names is keep:
                continue
            _replace_inode(keep[0], names, report, dry_run, on_replaced)
    return report


def _replace_inode(
    kept: Seen,
    names: list[Seen],
    report: DedupeReport,
    dry_run: bool,
    on_replaced: Callable[[Path], None] | None,
) -> None:
    """Replace every listed name of one duplicate inode; its bytes are freed when these were
    all its names."""
    done = 0
    for dup in names:
        reason = None
        if not (kept.unchanged() and dup.unchanged()):
            reason = "changed since it was hashed"
        elif dup.owner != kept.owner:
            reason = f"owner or permissions differ from {kept.path} (a link would share them)"
        elif not same_bytes(kept.path, dup.path):
            reason = f"same SHA-256 as {kept.path} but different bytes"
        elif not dry_run:
            reason = replace_with_link(kept.path, dup)
        if reason:
            report.skipped.append({"path": str(dup.path), "reason": reason})
            continue
        done += 1
        report.replaced.append({"path": str(dup.path), "kept": str(kept.path)})
        if on_replaced:
            on_replaced(dup.path)
    if done and done == names[0].nlink:
        report.reclaimed += names[0].size


def dedupe_library(
    ctx: Context,
    roots: list[Path] | None = None,
    dry_run: bool = False,
    on_hashed: Callable[[Path, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DedupeReport:
    """:func:`dedupe` over ``roots``, or over every registered file when none are given;
    registry rows of replaced paths get their new inode and mtime (same bytes, same hashes)."""
    from hub.registry import writes

    if not roots:
        with ctx.db.reader() as reader:
            rows = reader.rows("SELECT path FROM artifact")
        roots = [Path(r["path"]) for r in rows if Path(r["path"]).is_file()]
    roots = [p.expanduser().absolute() for p in roots]
    report = dedupe(roots, dry_run, on_hashed, on_total=on_total)
    if report.replaced and not dry_run:
        with ctx.db.session() as session:
            for item in report.replaced:
                row = writes.find_by_path(session, item["path"])
                if row is not None:
                    st = os.stat(item["path"])
                    writes.update(session, row, {"inode": st.st_ino, "mtime_ns": st.st_mtime_ns})
    return report
