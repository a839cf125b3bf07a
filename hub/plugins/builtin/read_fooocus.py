"""Image reader for Fooocus's JSON scheme (IMAGE_METADATA.md §6): sorted JSON in
``parameters`` (PNG) or in the IFD0 UserComment tag (JPEG/WebP). Python-repr strings
(``"(768, 1280)"``), the seed as a string, and LoRAs as ``[name, weight, hash]`` with the
first 10 hex of the whole file's SHA-256 (AutoV2). Its ``a1111`` scheme is A1111 text."""

from __future__ import annotations

import json
import re
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

_PAIR = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_NONE = ("None", "Default (model)", "")


def _json(meta: ImageMetadata) -> dict[str, Any] | None:
    for key in ("parameters", "UserComment"):
        text = meta.text.get(key, "").lstrip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(data, dict):
                return data
    return None


def _is_fooocus(data: dict[str, Any], meta: ImageMetadata) -> bool:
    return (
        str(data.get("version", "")).startswith("Fooocus")
        or data.get("metadata_scheme") == "fooocus"
        or meta.text.get("fooocus_scheme") == "fooocus"
        or "full_prompt" in data
    )


def _loras(value: Any) -> list[Resource]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and item and isinstance(item[0], str):
            res = Resource("lora", item[0], origin="loras")
            res.strength = number(item[1], float) if len(item) > 1 else None
            res.hashes = hash_entry(item[2]) if len(item) > 2 else {}
            out.append(res)
    return out


def read_fooocus(meta: ImageMetadata) -> ImageRecord | Declined:
    data = _json(meta)
    if data is None:
        return Declined("fooocus", "no JSON in 'parameters' or UserComment")
    if not _is_fooocus(data, meta):
        return Declined("fooocus", "JSON without Fooocus's keys (version, full_prompt)")
    data = dict(data)
    version = str(data.pop("version", "")).removeprefix("Fooocus").strip() or None
    rec = ImageRecord("fooocus", "Fooocus", version, score=60)
    rec.prompt = data.pop("prompt", None)
    rec.negative = data.pop("negative_prompt", None) or None
    rec.sampler = data.pop("sampler", None)
    rec.scheduler = data.pop("scheduler", None)
    rec.steps = number(data.pop("steps", None), int)
    rec.cfg = number(data.pop("guidance_scale", None), float)
    rec.seed = number(data.pop("seed", None), int)
    rec.clip_skip = number(data.pop("clip_skip", None), int)
    if size := _PAIR.match(str(data.get("resolution", ""))):
        data.pop("resolution")
        rec.width, rec.height = int(size[1]), int(size[2])
    if data.get("base_model"):
        rec.resources.append(
            Resource(
                "checkpoint",
                str(data.pop("base_model")),
                hash_entry(data.pop("base_model_hash", None)),
                origin="base_model",
            )
        )
    if str(data.get("vae", "")) not in _NONE:
        rec.resources.append(Resource("vae", str(data.pop("vae")), origin="vae"))
    rec.resources.extend(_loras(data.pop("loras", None)))
    rec.extra = data
    return rec


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("fooocus", read_fooocus)
