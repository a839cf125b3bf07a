"""Image reader for sd-hub's own record: the ``sd-hub`` PNG chunk ``hub generate`` writes
beside the A1111 ``parameters`` (every file by SHA-256, settings as run). It outranks the
A1111 reader on the same image: nothing is matched by name or by a short hash."""

from __future__ import annotations

import json
from typing import Any

from hub import hookimpl
from hub.plugins.imaging import Declined, ImageMetadata, ImageRecord, Resource, hash_entry

KEY = "sd-hub"  # hub.generate.RECORD_KEY
GROUPS = (
    ("model", "checkpoint"),
    ("vae", "vae"),
    ("loras", "lora"),
    ("embeddings", "embedding"),
    ("hypernetworks", "hypernetwork"),
    ("text_encoders", "text_encoder"),
    ("tokenizer", "tokenizer"),
)


def _resource(kind: str, item: dict[str, Any], origin: str) -> Resource:
    res = Resource(kind, item.get("tag") or item.get("name"), origin=origin)
    res.hashes = hash_entry(item.get("sha256"))
    if kind in ("lora", "hypernetwork"):
        res.strength = item.get("unet")
        res.clip_strength = item.get("te") if kind == "lora" else None
    return res


def read_sdhub(meta: ImageMetadata) -> ImageRecord | Declined:
    if KEY not in meta.text:
        return Declined("sd-hub", f"no '{KEY}' chunk")
    try:
        rec_json = json.loads(meta.text[KEY])
        s = rec_json["settings"]
        rec = ImageRecord("sd-hub", "sd-hub", str(rec_json.get("sd_hub") or "") or None, score=90)
        rec.prompt, rec.negative = rec_json["prompt"], rec_json.get("negative") or None
        rec.sampler, schedule = s["sampler"], s.get("schedule")
        rec.scheduler = None if schedule in (None, "Automatic") else schedule
        for attr in ("steps", "cfg", "seed", "width", "height", "clip_skip"):
            setattr(rec, attr, s[attr])
        rec.guidance = s.get("guidance")
        for group, kind in GROUPS:
            items = rec_json.get(group)
            for item in items if isinstance(items, list) else [items] if items else []:
                rec.resources.append(_resource(kind, item, group))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return Declined("sd-hub", f"'{KEY}' is damaged ({type(exc).__name__})")
    return rec


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("sd-hub", read_sdhub)
