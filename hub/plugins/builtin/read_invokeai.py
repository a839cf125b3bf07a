"""Image reader for InvokeAI's ``invokeai_metadata`` chunk (IMAGE_METADATA.md §5): v4+
model references ``{"key", "hash": "blake3:...", "name", "base", "type"}`` and v3 ones
``{"model_name", "base_model"}``; LoRAs ``[{"model" | "lora": {...}, "weight"}]``."""

from __future__ import annotations

import json
from typing import Any

from hub import hookimpl
from hub.plugins.imaging import (
    Declined,
    ImageMetadata,
    ImageRecord,
    Resource,
    hash_entry,
    number,
)

KEY = "invokeai_metadata"
SETTINGS = {
    "positive_prompt": "prompt",
    "negative_prompt": "negative",
    "scheduler": "scheduler",
}


def _resource(kind: str, ref: Any, origin: str) -> Resource | None:
    if not isinstance(ref, dict):
        return None
    name = ref.get("name") or ref.get("model_name")
    return Resource(kind, str(name) if name else None, hash_entry(ref.get("hash")), origin=origin)


def read_invokeai(meta: ImageMetadata) -> ImageRecord | Declined:
    if KEY not in meta.text:
        return Declined("invokeai", f"no '{KEY}' chunk")
    try:
        data = json.loads(meta.text[KEY])
    except (ValueError, RecursionError) as exc:
        return Declined("invokeai", f"'{KEY}' is not readable JSON ({type(exc).__name__})")
    if not isinstance(data, dict):
        return Declined("invokeai", f"'{KEY}' is not a JSON object")
    data = dict(data)
    rec = ImageRecord("invokeai", "InvokeAI", str(data.pop("app_version", "")) or None, score=60)
    for key, attr in SETTINGS.items():
        if isinstance(data.get(key), str):
            setattr(rec, attr, data.pop(key))
    for key, attr, cast in (
        ("steps", "steps", int),
        ("cfg_scale", "cfg", float),
        ("seed", "seed", int),
        ("width", "width", int),
        ("height", "height", int),
        ("clip_skip", "clip_skip", int),
    ):
        setattr(rec, attr, number(data.pop(key, None), cast))
    for key, kind in (("model", "checkpoint"), ("vae", "vae")):
        if res := _resource(kind, data.get(key), key):
            data.pop(key)
            rec.resources.append(res)
    loras = data.get("loras")
    if isinstance(loras, list):
        data.pop("loras")
        for item in loras:
            if not isinstance(item, dict):
                continue
            res = _resource("lora", item.get("model") or item.get("lora"), "loras")
            if res:
                res.strength = number(item.get("weight"), float)
                rec.resources.append(res)
    rec.extra = data
    return rec


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("invokeai", read_invokeai)
