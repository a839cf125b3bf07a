"""Image reader for SwarmUI (IMAGE_METADATA.md §0): JSON in ``parameters`` (PNG) or the EXIF
UserComment (JPEG/WebP) with ``sui_image_params`` (parameter ids: ``prompt``,
``negativeprompt``, ``model``, ``seed``, ``steps``, ``cfgscale``, ``sampler``, ``scheduler``,
``loras`` + ``loraweights`` (+ ``loratencweights``), ``width``, ``height``,
``clipstopatlayer``, ``vae``, ``swarm_version``), ``sui_extra_data`` and ``sui_models``
(``{name, param, hash}``, the hash ``0x`` + the SHA-256 of the bytes after the safetensors
header: AutoV3 in full). Values may be strings, lists comma-separated strings; model names
are relative to Swarm's model folder, without ``.safetensors``. Samplers and schedulers
carry ComfyUI's names."""

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

SOURCES = ("parameters", "UserComment")
PARAMS, EXTRA, MODELS = "sui_image_params", "sui_extra_data", "sui_models"
_NO_FILE = ("", "none", "automatic")  # a ``vae`` that names no file
_FOLDER_EXT = (".safetensors", ".sft")


def _json(meta: ImageMetadata) -> tuple[str, dict[str, Any]] | None:
    for key in SOURCES:
        text = meta.text.get(key, "").lstrip()
        if text.startswith("{") and PARAMS in text:
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(data, dict) and isinstance(data.get(PARAMS), dict):
                return key, data
    return None


def _items(value: Any) -> list[str]:
    """A Swarm list value: a JSON list, or a comma-separated string."""
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    if isinstance(value, str) and value.strip():
        return [v.strip() for v in value.split(",")]
    return []


def _bare(name: str) -> str:
    """A model name as Swarm's params write it: forward slashes, no ``.safetensors``."""
    name = name.replace("\\", "/")
    for ext in _FOLDER_EXT:
        name = name.removesuffix(ext)
    return name.lower()


def _hashes(models: Any) -> dict[tuple[str, str], dict[str, str]]:
    """(param, bare name) -> hashes, from ``sui_models``; malformed entries are skipped."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for item in models if isinstance(models, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        value = str(item.get("hash") or "").strip().lower()
        found = hash_entry(value.removeprefix("0x"), {64: "autov3"}) if value else {}
        out[(str(item.get("param", "")).lower(), _bare(item["name"]))] = found
    return out


def _loras(p: dict[str, Any], hashes: dict, notes: list[str]) -> list[Resource]:
    names = _items(p.pop("loras", None))
    weights = _items(p.pop("loraweights", None))
    tenc = _items(p.pop("loratencweights", None))
    if names and (len(weights) not in (0, len(names)) or len(tenc) not in (0, len(names))):
        notes.append(
            f"{len(names)} LoRAs but {len(weights)} weights and {len(tenc)} text-encoder weights"
        )
    out = []
    for i, name in enumerate(names):
        res = Resource("lora", name, hashes.get(("loras", _bare(name)), {}), origin="loras")
        res.strength = number(weights[i], float) if i < len(weights) else None
        res.clip_strength = number(tenc[i], float) if i < len(tenc) else None
        out.append(res)
    return out


def read_swarmui(meta: ImageMetadata) -> ImageRecord | Declined:
    found = _json(meta)
    if found is None:
        return Declined("swarmui", f"no JSON with '{PARAMS}' in 'parameters' or UserComment")
    _source, data = found
    p = dict(data[PARAMS])
    hashes = _hashes(data.get(MODELS))
    rec = ImageRecord("swarmui", "SwarmUI", str(p.pop("swarm_version", "")) or None, score=60)
    rec.prompt = _text(p.pop("prompt", None))
    rec.negative = _text(p.pop("negativeprompt", None)) or None
    rec.sampler = _text(p.pop("sampler", None))
    rec.scheduler = _text(p.pop("scheduler", None))
    rec.steps = number(p.pop("steps", None), int)
    rec.cfg = number(p.pop("cfgscale", None), float)
    rec.seed = number(p.pop("seed", None), int)
    rec.width = number(p.pop("width", None), int)
    rec.height = number(p.pop("height", None), int)
    layer = number(p.pop("clipstopatlayer", None), int)
    rec.clip_skip = -layer if layer is not None and layer < 0 else layer
    for param, kind in (("model", "checkpoint"), ("vae", "vae")):
        name = _text(p.get(param))
        if name and name.lower() not in _NO_FILE:
            p.pop(param)
            h = hashes.get((param, _bare(name)), {})
            rec.resources.append(Resource(kind, name, h, origin=param))
    rec.resources += _loras(p, hashes, rec.notes)
    extra = data.get(EXTRA) if isinstance(data.get(EXTRA), dict) else {}
    for name in _items(extra.get("used_embeddings")):
        h = hashes.get(("used_embeddings", _bare(name)), {})
        rec.resources.append(Resource("embedding", name, h, origin="used_embeddings"))
    rec.extra = p | {f"{EXTRA}.{k}": v for k, v in extra.items() if k != "used_embeddings"}
    return rec


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


@hookimpl
def register_image_readers(register: Any) -> None:
    register("swarmui", read_swarmui)
