"""The parts a Flux.1 model needs beside its transformer, resolved for ``hub generate``: a
CLIP-L and a T5-XXL text encoder, the 16-channel VAE and the T5 tokenizer. Each comes from
the model itself (a ComfyUI whole checkpoint's ``text_encoders.clip_l.``/``t5xxl.``/``vae.``
sections, a diffusers folder's ``text_encoder``/``text_encoder_2``/``vae``/``tokenizer_2``)
or from the registry (``--text-encoder REF``, ``--vae REF``, ``--tokenizer REF``, or the one
registered T5 tokenizer), as ComfyUI users keep them. A missing part is a one-line error
naming what is needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.context import Context
from hub.core import dit_keys
from hub.core.errors import HubError
from hub.registry.queries import list_artifacts

Resolve = Callable[[str, str, str], dict[str, Any]]  # (ref, kind, origin) -> registry JSON
NEEDED = {"clip": "a CLIP-L text encoder", "t5": "a T5-XXL text encoder", "vae": "a 16-channel VAE"}
HOW = {
    "clip": "pass --text-encoder REF or install one",
    "t5": "pass --text-encoder REF or install one",
    "vae": "pass --vae REF or install one (FLUX.1's ae.safetensors)",
    "tokenizer": "install one: hub import FOLDER (a folder with tokenizer_config.json and "
    "tokenizer.json or spiece.model, such as ComfyUI's comfy/t5_tokenizer), or pass "
    "--tokenizer REF",
}
FOLDER_PARTS = {"clip": "text_encoder", "t5": "text_encoder_2", "vae": "vae"}


def own_parts(model: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> set[str]:
    """The parts a Flux model carries: ``clip``, ``t5``, ``vae``, ``tokenizer``."""
    if model["format"] == "diffusers":
        folder = Path(model["path"])
        found = {name for name, sub in FOLDER_PARTS.items() if (folder / sub).is_dir()}
        if (folder / "tokenizer_2" / "tokenizer_config.json").is_file():
            found.add("tokenizer")
        return found
    encoders, vae = dit_keys.bundled_parts(shapes)
    found = {"vae"} if vae else set()
    found |= {"clip" for e in encoders if e.startswith("clip_l")}
    found |= {"t5" for e in encoders if e.startswith("t5")}
    return found


def _slot(art: dict[str, Any], origin: str) -> str:
    variant = art.get("variant") or ""
    if art["kind"] == "text_encoder" and variant.startswith("clip-"):
        if variant == "clip-g":
            raise HubError(f"{art['name']} is a CLIP-G text encoder; Flux takes CLIP-L ({origin})")
        return "clip"
    if art["kind"] == "text_encoder" and variant.startswith("t5"):
        return "t5"
    raise HubError(
        f"{art['name']} ({art['kind']} {variant or '?'}) is not a CLIP-L or T5 text encoder "
        f"({origin})"
    )


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
    """The parts a Flux generation takes from the registry, by slot (``clip``, ``t5``,
    ``vae``, ``tokenizer``; absent: the model's own), or a one-line error naming the first
    one missing."""
    chosen: dict[str, dict[str, Any]] = {}
    for ref in text_encoders:
        origin = f"--text-encoder {ref}"
        art = resolve_ref(ref, "text_encoder", origin)
        chosen[_slot(art, origin)] = art
    if vae:
        chosen["vae"] = resolve_ref(vae, "vae", "--vae")
    if tokenizer:
        chosen["tokenizer"] = resolve_ref(tokenizer, "tokenizer", "--tokenizer")
    own = own_parts(model, shapes)
    for name in ("t5", "clip", "vae"):
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
