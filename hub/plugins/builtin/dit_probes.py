"""Probes for today's bases: Flux.1 and SD3/SD3.5 transformers (BFL/ComfyUI and diffusers
layouts, alone or in whole checkpoints), their separate text encoders and diffusers folders.
Header only; every width and depth comes from the tensors' shapes."""

from __future__ import annotations

from hub import hookimpl
from hub.core import dit_keys, flux_keys
from hub.core.taxonomy import Base, Format, Kind
from hub.plugins.probing import Subject, Verdict

# Flux's image input is the packed latent (64 values per 2x2 patch) alone, or with the
# control image's latent (Depth, Canny: twice) or the masked image and mask (Fill: six times).
FLUX_INPUT_VARIANT = {1: None, 2: "depth-or-canny", 6: "fill"}


def _parts_reason(subject: Subject) -> str:
    encoders, vae = dit_keys.bundled_parts(subject.keys)
    if not encoders and not vae:
        return "transformer only: generation needs text encoders and a VAE beside it"
    parts = [f"text encoders {', '.join(encoders)}" if encoders else "no text encoders"]
    parts.append("a VAE" if vae else "no VAE")
    return "whole checkpoint with " + " and ".join(parts)


def _flux_variant(shapes: dict[str, tuple[int, ...]], geo: flux_keys.Geometry) -> tuple[str, str]:
    prefix = flux_keys.bfl_prefix(shapes)
    out_key = "proj_out.weight" if prefix is None else f"{prefix}final_layer.linear.weight"
    out_width = shapes[out_key][0]
    ratio, rest = divmod(geo.in_channels, out_width)
    kind = FLUX_INPUT_VARIANT.get(ratio) if not rest else "unknown-input"
    distilled = "dev" if geo.guidance else "schnell"
    variant = f"{kind}-{distilled}" if kind else distilled
    why = (
        f"{'guidance_in' if geo.guidance else 'no guidance embedder'} -> {distilled}; image "
        f"input {geo.in_channels} for {out_width} latent values" + (f" -> {kind}" if kind else "")
    )
    return variant, why


def flux_probe(subject: Subject) -> Verdict:
    shapes = subject.keys
    prefix = flux_keys.bfl_prefix(shapes)
    if prefix is None and not flux_keys.is_diffusers_flux(shapes):
        return Verdict("flux", False, "no double_blocks / single_transformer_blocks keys")
    geo = flux_keys.geometry(shapes)
    layout = "diffusers" if prefix is None else "bfl"
    variant, why = _flux_variant(shapes, geo)
    where = f"{prefix}double_blocks" if prefix is not None else "transformer_blocks"
    reason = (
        f"Flux.1 {layout} layout ({where}): {geo.double} double and {geo.single} single "
        f"blocks of width {geo.hidden}; {why}; {_parts_reason(subject)}"
    )
    return Verdict(
        "flux", True, reason, Kind.CHECKPOINT, Base.FLUX, layout, variant=variant, score=110
    )


def sd3_probe(subject: Subject) -> Verdict:
    shapes = subject.keys
    prefix = dit_keys.sd3_prefix(shapes)
    if prefix is None and not dit_keys.is_diffusers_sd3(shapes):
        return Verdict("sd3", False, "no joint_blocks / diffusers SD3 transformer keys")
    depth, hidden, attn2 = dit_keys.sd3_geometry(shapes)
    size = dit_keys.sd3_size(depth, attn2)
    layout = "diffusers" if prefix is None else "sai"
    reason = (
        f"SD3 MMDiT {layout} layout: {depth} joint blocks of width {hidden}"
        f"{', MMDiT-X attn2' if attn2 else ''} -> {size}; {_parts_reason(subject)}"
    )
    return Verdict("sd3", True, reason, Kind.CHECKPOINT, Base.SD3, layout, variant=size, score=110)


def text_encoder_probe(subject: Subject) -> Verdict:
    shapes = subject.keys
    found = dit_keys.text_encoder_shape(shapes)
    if found is None:
        return Verdict("text_encoder", False, "no CLIP or T5 encoder layers at the top level")
    family, width, layers = found
    name = dit_keys.text_encoder_name(family, width)
    reason = f"{family.upper()} text encoder: {layers} layers of width {width} -> {name}"
    if dit_keys.fp8_scaled(shapes):
        reason += "; fp8 'scaled' (weights stored divided by scale_weight)"
    # CLIP-L serves SD1, SDXL, SD3 and Flux; CLIP-G SDXL and SD3; T5 SD3 and Flux.
    return Verdict(
        "text_encoder",
        True,
        reason + "; shared by several bases",
        Kind.TEXT_ENCODER,
        Base.UNKNOWN,
        "transformers",
        variant=name,
        score=95,
    )


FOLDER_TRANSFORMERS = {
    "FluxTransformer2DModel": Base.FLUX,
    "SD3Transformer2DModel": Base.SD3,
}


def dit_folder_probe(subject: Subject) -> Verdict:
    folder = subject.folder
    if subject.format is not Format.DIFFUSERS or not folder:
        return Verdict("dit_folder", False, "not a diffusers folder")
    config = folder.get("transformer/config.json")
    if not config:
        return Verdict("dit_folder", False, "no transformer/config.json")
    cls = config.get("_class_name", "?")
    base = FOLDER_TRANSFORMERS.get(cls)
    if base is None:
        return Verdict("dit_folder", False, f"transformer {cls} is not Flux or SD3")
    pipeline = folder.get("model_index.json", {}).get("_class_name", "?")
    if base is Base.FLUX:
        variant = "dev" if config.get("guidance_embeds") else "schnell"
        why = f"guidance_embeds {bool(config.get('guidance_embeds'))} -> {variant}"
    else:
        variant = dit_keys.sd3_size(
            config.get("num_layers", 0), bool(config.get("dual_attention_layers"))
        )
        why = f"{config.get('num_layers')} layers -> {variant}"
    return Verdict(
        "dit_folder",
        True,
        f"{pipeline}: transformer {cls} -> {base}; {why}",
        Kind.CHECKPOINT,
        base,
        "diffusers",
        variant=variant,
        score=110,
    )


# tokenizer_config.json's class -> the family of text encoder it serves
TOKENIZER_FAMILIES = {"T5Tokenizer": "t5", "T5TokenizerFast": "t5", "CLIPTokenizer": "clip"}


def tokenizer_probe(subject: Subject) -> Verdict:
    if subject.format is not Format.TOKENIZER or not subject.folder:
        return Verdict("tokenizer", False, "not a tokenizer folder")
    cls = str(subject.folder.get("tokenizer_config.json", {}).get("tokenizer_class") or "?")
    family = TOKENIZER_FAMILIES.get(cls) or TOKENIZER_FAMILIES.get(cls.removesuffix("Fast"))
    return Verdict(
        "tokenizer",
        True,
        f"tokenizer folder (tokenizer_config.json: {cls}) -> {family or 'unknown'} tokenizer",
        Kind.TOKENIZER,
        Base.UNKNOWN,
        "transformers",
        variant=family,
        score=100,
    )


@hookimpl(trylast=True)
def register_probes(register):
    register("flux", flux_probe)
    register("sd3", sd3_probe)
    register("text_encoder", text_encoder_probe)
    register("dit_folder", dit_folder_probe)
    register("tokenizer", tokenizer_probe)
