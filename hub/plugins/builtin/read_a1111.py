"""Image reader for A1111-style infotext (A1111, Forge, reForge, SD.Next, Civitai's generator,
Fooocus's ``a1111`` scheme): the ``parameters`` text, or the EXIF/XMP UserComment.

Parsing is :func:`hub.core.infotext.parse_infotext` (the one parser sd-hub has); this maps its
pairs to a record (IMAGE_METADATA.md §2, §3, §8; FORMATS.md §9).
"""

from __future__ import annotations

import re
from typing import Any

from hub import hookimpl
from hub.core import infotext
from hub.plugins.imaging import (
    Declined,
    ImageMetadata,
    ImageRecord,
    Resource,
    hash_entry,
    number,
)

SOURCES = ("parameters", "UserComment", "XMP:UserComment")
_HASHES_KIND = {
    "lora": "lora",
    "lyco": "lora",
    "embed": "embedding",
    "hypernet": "hypernetwork",
}
_CIVITAI_KIND = {
    "checkpoint": "checkpoint",
    "lora": "lora",
    "locon": "lora",
    "lycoris": "lora",
    "dora": "lora",
    "embed": "embedding",
    "textualinversion": "embedding",
    "embedding": "embedding",
    "hypernet": "hypernetwork",
    "hypernetwork": "hypernetwork",
    "vae": "vae",
}
_AIR = re.compile(r"urn:air:[^:]+:([^:]+):[^:]+:(\d+)@(\d+)")
_FORGE = re.compile(r"^f\d[\d.]*v(\d+-v)?")


def tool_of(p: dict[str, Any]) -> tuple[str, str | None]:
    """The writer and its version, from ``App``, ``Version`` and Civitai's keys."""
    version = str(p["Version"]) if "Version" in p else None
    if str(p.get("App", "")) == "SD.Next":
        return "SD.Next", version
    if version and version.startswith("Fooocus"):
        return "Fooocus", version.removeprefix("Fooocus").strip()
    if version and (forge := _FORGE.match(version)):
        return ("reForge" if forge[1] else "Forge"), version
    if any(k in p for k in ("Civitai resources", "Civitai metadata", "Created Date")):
        return "Civitai", version
    return "A1111", version


def _key(name: str | None) -> str:
    """A name as A1111 writes it in ``Lora hashes`` (no ``:`` or ``,``), for matching."""
    return re.sub("[:,]", "", name or "").strip().lower()


class _Resources:
    """Resources merged by (kind, name): a tag, a ``Lora hashes`` entry and a ``Hashes``
    entry for the same name are one add-on; the checkpoint and VAE are one each."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Resource] = {}

    def get(self, kind: str, name: str | None, origin: str) -> Resource:
        key = (kind, "" if kind in ("checkpoint", "vae") else _key(name))
        res = self.items.get(key)
        if res is None:
            res = self.items[key] = Resource(kind, name or None, origin=origin)
        elif name and not res.name:
            res.name = name
        if origin not in res.origin.split(", "):
            res.origin = f"{res.origin}, {origin}" if res.origin else origin
        return res


def _tags(info: infotext.Infotext, out: _Resources, notes: list[str]) -> None:
    for text in (info.prompt, info.negative):
        tags, errors = infotext.find_tags(text)
        notes.extend(errors)
        for tag in tags:
            if tag.network == "hypernet":
                out.get("hypernetwork", tag.name, "prompt tag").strength = tag.te
            else:
                res = out.get("lora", tag.name, "prompt tag")
                res.strength, res.clip_strength = tag.unet, tag.te


def _hash_keys(p: dict[str, Any], out: _Resources) -> None:
    if "Model hash" in p or "Model" in p:
        res = out.get("checkpoint", p.pop("Model", None), "Model")
        res.hashes |= hash_entry(p.pop("Model hash", None))
    if "VAE hash" in p or "VAE" in p:
        res = out.get("vae", p.pop("VAE", None), "VAE")
        res.hashes |= hash_entry(p.pop("VAE hash", None), {10: "autov2"})
    for field, kind, widths in (
        ("Lora hashes", "lora", {12: "autov3"}),
        ("TI hashes", "embedding", {12: "sha256_12"}),
    ):
        if isinstance(p.get(field), str):
            for name, h in infotext.hash_list(p.pop(field)).items():
                out.get(kind, name, field).hashes |= hash_entry(h, widths)
    if isinstance(p.get("LoRA networks"), str):  # SD.Next: names and hashes in two lists
        names = [n.strip() for n in p.pop("LoRA networks").split(",")]
        hashes = [h.strip() for h in str(p.pop("LoRA hashes", "")).split(",")]
        for name, h in zip(names, hashes + [""] * len(names), strict=False):
            out.get("lora", name, "LoRA networks").hashes |= hash_entry(h, {12: "autov3"})
    if "Hypernet" in p:
        res = out.get("hypernetwork", p.pop("Hypernet"), "Hypernet")
        res.hashes |= hash_entry(p.pop("Hypernet hash", None))
        res.strength = number(p.pop("Hypernet strength", None), float)


def _civitai_hashes(value: Any, out: _Resources) -> bool:
    """``Hashes: {"model": h, "vae": h, "lora:NAME": h, "embed:NAME": h, ...}`` (10 hex)."""
    if not isinstance(value, dict):
        return False
    for key, h in value.items():
        head, sep, name = str(key).partition(":")
        kind = "checkpoint" if key == "model" else "vae" if key == "vae" else None
        kind = kind or (_HASHES_KIND.get(head.lower()) if sep else None)
        if kind:
            out.get(kind, name or None, "Hashes").hashes |= hash_entry(h, {12: "autov3"})
    return True


def _civitai_resources(value: Any, out: _Resources) -> bool:
    """``Civitai resources: [{"type", "modelVersionId", "modelName", "weight"} | {"air"}]``."""
    if not isinstance(value, list):
        return False
    for item in value:
        if not isinstance(item, dict):
            continue
        kind, version_id = str(item.get("type", "")).lower(), item.get("modelVersionId")
        if air := _AIR.match(str(item.get("air", ""))):
            kind, version_id = air[1].lower(), air[3]
        kind = _CIVITAI_KIND.get(kind)
        if kind is None:
            continue
        name = item.get("modelName")
        res = Resource(kind, str(name) if name else None, origin="Civitai resources")
        res.version_id = number(version_id, int)
        res.strength = number(item.get("weight"), float)
        out.items[(kind, f"civitai:{res.version_id}:{len(out.items)}")] = res
    return True


def record_from_infotext(info: infotext.Infotext) -> ImageRecord:
    """The record of parsed infotext; every pair it does not map stays in ``extra``."""
    p = dict(info.params)
    tool, version = tool_of(p)
    p.pop("Version", None)
    if tool == "SD.Next":
        p.pop("App")
    rec = ImageRecord("a1111", tool, version, info.prompt, info.negative or None)
    sampler = p.pop("Sampler", None)
    schedule = p.pop("Schedule type", None)
    if sampler is not None:
        rec.sampler, legacy = infotext.split_sampler(str(sampler))
        schedule = schedule or (legacy if legacy != "Automatic" else None)
    rec.scheduler = str(schedule) if schedule is not None else None
    rec.steps = number(p.pop("Steps", None), int)
    rec.cfg = number(p.pop("CFG scale", None), float)
    rec.guidance = number(p.pop("Distilled CFG Scale", None), float)  # Forge, Flux
    rec.seed = number(p.pop("Seed", None), int)
    rec.clip_skip = number(p.pop("Clip skip", p.pop("CLiP-skip", None)), int)
    size = p.pop("Size", None)
    if isinstance(size, tuple):
        rec.width, rec.height = size
    elif size is not None:
        p["Size"] = size
    out = _Resources()
    _tags(info, out, rec.notes)
    _hash_keys(p, out)
    if _civitai_hashes(p.get("Hashes"), out):
        p.pop("Hashes")
    if _civitai_resources(p.get("Civitai resources"), out):
        p.pop("Civitai resources")
    rec.resources = list(out.items.values())
    rec.extra = p | {f"{k} (first)": v for k, v in info.earlier.items()}
    return rec


def read_a1111(meta: ImageMetadata) -> ImageRecord | Declined:
    source = next((k for k in SOURCES if meta.text.get(k, "").strip()), None)
    if source is None:
        return Declined("a1111", "no 'parameters' text, EXIF UserComment or XMP UserComment")
    text = meta.text[source]
    if text.lstrip().startswith("{"):
        return Declined("a1111", f"'{source}' is JSON, not infotext")
    info = infotext.parse_infotext(text)
    if not info.params:
        return Declined("a1111", f"'{source}' has no settings line ('Steps: ...')")
    return record_from_infotext(info)


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("a1111", read_a1111)
