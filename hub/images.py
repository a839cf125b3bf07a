"""What an image says about how it was made (``hub inspect``): every registered reader runs
on the image's metadata, the best record wins, and each resource it names is resolved
against the registry: by hash first (each form by its own rule), then by share-site
version id, then by name (exact, then without folders and extension). Several matches are
reported as ambiguous, never guessed."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from hub.context import Context
from hub.imagemeta import read_metadata
from hub.plugins.imaging import Declined, ImageReader, ImageRecord, Resource
from hub.registry.db import Reader
from hub.taxonomy import Kind, Ref

_MODEL_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|sft|gguf)$", re.IGNORECASE)


@dataclass
class Resolution:
    """Where a resource stands: ``held`` (``artifact`` is the registered file),
    ``ambiguous`` (``candidates``), or ``unknown``; ``by`` says what matched."""

    status: str
    by: str | None = None
    artifact: dict[str, Any] | None = None
    candidates: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class Inspection:
    """One image: the winning record (None when no reader matched), every reader's answer,
    notes on skipped metadata, and one resolution per resource of the record."""

    path: str
    container: str
    record: ImageRecord | None
    answers: list[dict[str, Any]]
    notes: list[str]
    resolutions: list[Resolution] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        rec = self.record.as_dict() if self.record else None
        if rec:
            for res, how in zip(rec["resources"], self.resolutions, strict=False):
                res["resolution"] = asdict(how)
        return {
            "path": self.path,
            "container": self.container,
            "record": rec,
            "readers": self.answers,
            "notes": self.notes,
        }


def read_image(path: Path, readers: dict[str, ImageReader]) -> Inspection:
    """Run every reader on the image's metadata; the best-scoring record wins. A reader that
    raises is reported as declining with its error, so one bad plugin hides nothing."""
    meta = read_metadata(path)
    answers: list[dict[str, Any]] = []
    best: ImageRecord | None = None
    for name, reader in readers.items():
        try:
            answer = reader(meta)
        except Exception as exc:  # a third-party reader's bug must not hide the others
            answer = Declined(name, f"failed: {type(exc).__name__}: {exc}")
        if isinstance(answer, ImageRecord):
            answers.append({"reader": name, "matched": True, "tool": answer.tool})
            if best is None or answer.score > best.score:
                best = answer
        else:
            answers.append({"reader": name, "matched": False, "reason": answer.reason})
    return Inspection(str(path), meta.container, best, answers, list(meta.notes))


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "kind", "name", "path", "sha256")}


def _display(row: dict[str, Any]) -> str:
    return f"{row['kind']}:{row['name']} ({row['sha256'][:10]})"


def _pick(rows: list[dict[str, Any]], by: str) -> Resolution | None:
    unique = list({r["id"]: r for r in rows}.values())
    if len(unique) == 1:
        return Resolution("held", by, _brief(unique[0]))
    if unique:
        return Resolution("ambiguous", by, candidates=sorted(_display(r) for r in unique))
    return None


def name_forms(name: str) -> list[str]:
    """The name as written, then without folders (``/`` or ``\\``) and model extension."""
    bare = _MODEL_EXT.sub("", PureWindowsPath(name).name)
    return [name] if bare == name else [name, bare]


def resolve_resource(reader: Reader, res: Resource) -> Resolution:
    """The registered file a resource names: by hash, version id, then name."""
    from hub.registry.queries import resolve_rows, rows_by_hash_form, rows_by_source_version

    for form, value in res.hashes.items():
        if found := _pick(rows_by_hash_form(reader, form, value), form):
            return found
    if res.version_id is not None:
        found = _pick(rows_by_source_version(reader, "civitai", res.version_id), "version id")
        if found:
            return found
    kind = Kind(res.kind) if res.kind in Kind.__members__.values() else None
    for form in name_forms(res.name) if res.name else []:
        if found := _pick(resolve_rows(reader, Ref(form, kind=kind, name=form)), "name"):
            if res.hashes and found.status == "held":
                given = ", ".join(f"{k} {v}" for k, v in res.hashes.items())
                found.note = f"the image gives {given}; the registered file's hash differs"
            return found
    return Resolution("unknown")


def inspect_image(ctx: Context, path: Path) -> Inspection:
    """Read an image and resolve every resource it names against the registry."""
    found = read_image(path, ctx.image_readers)
    if found.record and found.record.resources:
        with ctx.db.reader() as reader:
            found.resolutions = [resolve_resource(reader, r) for r in found.record.resources]
    return found
