"""Image reader for NovelAI (IMAGE_METADATA.md §7): ``Software`` = ``NovelAI``, the prompt
in ``Description``, the settings as JSON in ``Comment`` (``uc`` negative, ``scale`` CFG,
V4 captions). NovelAI's models are not files, so it names no resources."""

from __future__ import annotations

import json
from typing import Any

from hub import hookimpl
from hub.plugins.imaging import Declined, ImageMetadata, ImageRecord, number


def _caption(value: Any) -> str | None:
    """``{"caption": {"base_caption": ..., "char_captions": [{"char_caption": ...}]}}``."""
    caption = value.get("caption") if isinstance(value, dict) else None
    if not isinstance(caption, dict):
        return None
    parts = [caption.get("base_caption")]
    parts += [
        c.get("char_caption") for c in caption.get("char_captions") or [] if isinstance(c, dict)
    ]
    return "\n".join(p for p in parts if isinstance(p, str) and p) or None


def read_novelai(meta: ImageMetadata) -> ImageRecord | Declined:
    if meta.text.get("Software") != "NovelAI":
        return Declined("novelai", "no 'Software: NovelAI' chunk")
    rec = ImageRecord("novelai", "NovelAI", score=60)
    try:
        data = json.loads(meta.text.get("Comment") or "{}")
    except (ValueError, RecursionError) as exc:
        rec.notes.append(f"'Comment' is not readable JSON ({type(exc).__name__})")
        data = {}
    data = dict(data) if isinstance(data, dict) else {}
    rec.prompt = meta.text.get("Description") or _str(data.get("prompt"))
    rec.negative = _str(data.pop("uc", None))
    if (v4 := _caption(data.get("v4_prompt"))) and not rec.prompt:
        rec.prompt = v4
    rec.negative = rec.negative or _caption(data.get("v4_negative_prompt"))
    data.pop("prompt", None)
    rec.sampler = _str(data.pop("sampler", None))
    rec.steps = number(data.pop("steps", None), int)
    rec.cfg = number(data.pop("scale", None), float)
    rec.seed = number(data.pop("seed", None), int)
    rec.width = number(data.pop("width", None), int)
    rec.height = number(data.pop("height", None), int)
    if source := meta.text.get("Source"):
        data["Source"] = source
    rec.extra = data
    return rec


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("novelai", read_novelai)
