"""An image reader for the made-up tool ExtTool: a PNG text chunk ``exttool`` holding JSON
``{"prompt": ..., "steps": ..., "seed": ...}``."""

from __future__ import annotations

import json

import hub
from hub.plugins.imaging import Declined, ImageMetadata, ImageRecord


def read_exttool(meta: ImageMetadata) -> ImageRecord | Declined:
    raw = meta.text.get("exttool")
    if raw is None:
        return Declined("exttool", "no 'exttool' chunk")
    try:
        data = json.loads(raw)
    except ValueError:
        return Declined("exttool", "the 'exttool' chunk is not JSON")
    return ImageRecord(
        "exttool",
        "ExtTool",
        prompt=data.get("prompt"),
        steps=data.get("steps"),
        seed=data.get("seed"),
        score=95,
    )


@hub.hookimpl
def register_image_readers(register):
    register("exttool", read_exttool)
