"""The parts a diffusion-transformer model needs beside its transformer, resolved for
``hub generate``: Flux.1 a CLIP-L and a T5-XXL text encoder, SD3/SD3.5 also a CLIP-G; the
16-channel VAE and the T5 tokenizer. Each comes from the model itself (a ComfyUI/SAI whole
checkpoint's ``text_encoders.clip_l.``/``clip_g.``/``t5xxl.`` and ``vae.`` or
``first_stage_model.`` sections, a diffusers folder's components) or from the registry
(``--text-encoder REF``, ``--vae REF``, ``--tokenizer REF``, or the one registered T5
tokenizer), as ComfyUI users keep them. A missing part is a one-line error naming what is
needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core import dit_keys
from hub.core.errors import HubError
from hub.registry.queries import list_artifacts

Resolve = Callable[[str, str, str], dict[str, Any]]  # (ref, kind, origin) -> registry JSON
NEEDED = {
    "clip": "a CLIP-L text encoder",
    "clip_g": "a CLIP-G text encoder",
    "t5": "a T5-XXL text encoder",
    "vae": "a 16-channel VAE",
}
# The parts each base needs, in the order a missing one is named.
SLOTS = {"flux": ("t5", "clip", "vae"), "sd3": ("t5", "clip", "clip_g", "vae")}
HOW = {
    "clip": "pass --text-encoder REF or install one",
    "clip_g": "pass --text-encoder REF or install one",
    "t5": "pass --text-encoder REF or install one",
    "vae": "pass --vae REF or install one (FLUX.1's ae.safetensors)",
    "tokenizer": "install one: hub import FOLDER (a folder with tokenizer_config.json and "
    "tokenizer.json or spiece.model, such as ComfyUI's comfy/t5_tokenizer), or pass "
    "--tokenizer REF",
}
BUNDLED_NAMES = {"clip_l": "clip", "clip_g": "clip_g", "t5xxl": "t5"}
CLIP_WIDTHS = {"clip-l": 768, "clip-g": 1280}


def own_parts(model: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> set[str]:
    """The parts a model carries: ``clip``, ``clip_g``, ``t5``, ``vae``, ``tokenizer``."""
    if model["format"] == "diffusers":
        folder = Path(model["path"])
        subs = dit_keys.DIFFUSERS_FOLDERS[model["base"]]
        found = {name for name, sub in subs.items() if (folder / sub).is_dir()}
        if not (folder / subs["tokenizer"] / "tokenizer_config.json").is_file():
            found.discard("tokenizer")
        return found
    encoders, vae = dit_keys.bundled_parts(shapes)
    found = {"vae"} if vae else set()
    return found | {BUNDLED_NAMES[e] for e in encoders if e in BUNDLED_NAMES}


def _clip_width(art: dict[str, Any]) -> int:
    """A CLIP text encoder's width from its variant (``clip-l``, ``clip-g``, ``clip-<width>``)."""
    variant = art.get("variant") or ""
    return CLIP_WIDTHS.get(variant) or int(variant.rpartition("-")[2] or 0)


def _text_slots(base: str, arts: list[tuple[dict[str, Any], str]]) -> dict[str, dict[str, Any]]:
    """Text encoders by slot: T5 by its family; of CLIPs, ``clip-l``/``clip-g`` by name, and of
    two unnamed ones the narrower is CLIP-L (768 against CLIP-G's 1280)."""
    chosen: dict[str, dict[str, Any]] = {}
    clips = []
    for art, origin in arts:
        variant = art.get("variant") or ""
        if variant.startswith("t5"):
            chosen["t5"] = art
        elif variant.startswith("clip-"):
            clips.append(art)
        else:
            raise HubError(
                f"{art['name']} ({variant or '?'}) is not a CLIP or T5 text encoder ({origin})"
            )
    clips.sort(key=_clip_width)
    if base == "flux" and any(a.get("variant") == "clip-g" for a in clips):
        raise HubError("Flux takes a CLIP-L text encoder, not CLIP-G", hint=HOW["clip"])
    if len(clips) == 1 and clips[0].get("variant") == "clip-g":
        chosen["clip_g"] = clips[0]
    elif clips:
        chosen["clip"] = clips[0]
        if len(clips) > 1:
            chosen["clip_g"] = clips[-1]
    return chosen


def _registered_tokenizer(ctx: Context) -> dict[str, Any] | None:
    with ctx.db.reader() as reader:
        found = list_artifacts(reader, kind="tokenizer")
    t5 = [a for a in found if (a.get("variant") or "").startswith("t5")] or found
    return t5[0] if t5 else None


def resolve(  # noqa: PLR0913 - each part has its own source
    ctx: Context,
    model: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    text_encoders: list[str],
    vae: str | None,
    tokenizer: str | None,
    resolve_ref: Resolve,
) -> dict[str, dict[str, Any]]:
    """The parts a generation takes from the registry, by slot (``clip``, ``clip_g``,
    ``t5``, ``vae``, ``tokenizer``; absent: the model's own), or a one-line error naming the first
    one missing."""
    flags = [f"--text-encoder {ref}" for ref in text_encoders]
    arts = [
        (resolve_ref(ref, "text_encoder", flag), flag)
        for ref, flag in zip(text_encoders, flags, strict=True)
    ]
    chosen = _text_slots(model["base"], arts)
    if vae:
        chosen["vae"] = resolve_ref(vae, "vae", "--vae")
    if tokenizer:
        chosen["tokenizer"] = resolve_ref(tokenizer, "tokenizer", "--tokenizer")
    own = own_parts(model, shapes)
    for name in SLOTS[model["base"]]:
        if name not in chosen and name not in own:
            raise HubError(f"{model['name']} needs {NEEDED[name]}", hint=HOW[name])
    if "tokenizer" not in chosen and "tokenizer" not in own:
        found = _registered_tokenizer(ctx)
        if found is None:
            raise HubError(
                f"{model['name']} needs a T5 tokenizer and none is registered",
                hint=HOW["tokenizer"],
            )
        chosen["tokenizer"] = found
    return chosen
