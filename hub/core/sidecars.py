"""Sidecar files beside a model: Civitai Helper's ``.civitai.info``, A1111's ``<stem>.json``
user metadata, and preview images."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.text import html_to_text

PREVIEW_EXTS = (".png", ".jpg", ".jpeg", ".webp")
MAX_SIDECAR = 8 << 20


@dataclass
class Sidecars:
    """What the sidecars of one model say; empty fields when there are none."""

    trained_words: list[str] = field(default_factory=list)
    description: str | None = None
    preferred_weight: float | None = None
    family: str | None = None
    version: str | None = None
    site_json: dict[str, Any] | None = None
    source_ref: dict[str, Any] | None = None
    preview: Path | None = None
    tags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        if path.stat().st_size > MAX_SIDECAR:
            problems.append(f"{path.name}: larger than {MAX_SIDECAR} bytes, ignored")
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: unreadable ({exc})")
        return None


def sidecar_names(model: Path) -> list[str]:
    """The names of every file :func:`read_sidecars` looks for beside ``model``: a scan that
    has listed the folder reads sidecars only when one of them is there."""
    stem = model.name if model.is_dir() else model.stem
    names = [f"{stem}.civitai.info", f"{stem}.json"]
    for ext in PREVIEW_EXTS:
        names += [f"{stem}.preview{ext}", f"{stem}{ext}"]
    return names


def preview_of(model: Path) -> Path | None:
    """The preview image A1111 would show for a model, if one exists."""
    stem = model.name if model.is_dir() else model.stem
    for ext in PREVIEW_EXTS:
        for name in (f"{stem}.preview{ext}", f"{stem}{ext}"):
            candidate = model.with_name(name)
            if candidate.is_file():
                return candidate
    return None


def _split_words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def read_sidecars(model: Path) -> Sidecars:
    """Read every sidecar next to ``model``; a broken sidecar is noted, never fatal."""
    out = Sidecars(preview=preview_of(model))
    stem = model.name if model.is_dir() else model.stem
    info_path = model.with_name(f"{stem}.civitai.info")
    if info_path.is_file():
        info = _read_json(info_path, out.problems)
        if isinstance(info, dict):
            out.site_json = info
            words = info.get("trainedWords") or []
            out.trained_words = [str(w).strip() for w in words if str(w).strip()]
            out.family = info.get("baseModel") or None
            out.version = info.get("name") or None
            model_obj = info.get("model") if isinstance(info.get("model"), dict) else {}
            out.description = html_to_text(info.get("description") or model_obj.get("description"))
            out.tags = [str(t) for t in (model_obj.get("tags") or []) if isinstance(t, str)]
            if info.get("id"):
                out.source_ref = {
                    "site": "civitai",
                    "model_id": info.get("modelId"),
                    "version_id": info.get("id"),
                }
    user_path = model.with_name(f"{stem}.json")
    if user_path.is_file():
        user = _read_json(user_path, out.problems)
        if isinstance(user, dict):
            if user.get("description"):
                out.description = str(user["description"])[:65536]
            if user.get("activation text"):
                out.trained_words = _split_words(str(user["activation text"]))
            weight = user.get("preferred weight")
            if isinstance(weight, int | float) and weight:
                out.preferred_weight = float(weight)
    return out


SD_VERSION = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}


def write_sidecars(
    model: Path,
    site_json: dict[str, Any] | None,
    description: str | None,
    trained_words: list[str],
    base: str,
) -> list[Path]:
    """Write ``<stem>.civitai.info`` (the site's version object) and A1111's ``<stem>.json``
    user metadata beside a model; an existing ``.json`` keeps its unknown keys."""
    stem = model.name if model.is_dir() else model.stem
    written = []
    if site_json:
        info = model.with_name(f"{stem}.civitai.info")
        info.write_text(json.dumps(site_json, indent=2), encoding="utf-8")
        written.append(info)
    user = model.with_name(f"{stem}.json")
    data: dict[str, Any] = {}
    if user.is_file():
        data = _read_json(user, []) or {}
    data.setdefault("description", description or "")
    data.setdefault("sd version", SD_VERSION.get(base, "Unknown"))
    data.setdefault("activation text", ", ".join(trained_words))
    data.setdefault("preferred weight", 0)
    data.setdefault("negative text", "")
    data.setdefault("notes", "")
    user.write_text(json.dumps(data, indent=2), encoding="utf-8")
    written.append(user)
    return written
