"""What the headers of today's bases look like beyond Flux's blocks (hub.core.flux_keys):
SD3/SD3.5 MMDiT transformers, the separate text encoders (CLIP-L, CLIP-G, T5) and the prefixes
of whole checkpoints that bundle them. Sources: diffusers' single-file loader (SD3
``joint_blocks``/``x_block.attn2`` for MMDiT-X, ComfyUI/SAI ``text_encoders.<name>.`` and
``first_stage_model.`` prefixes) and ComfyUI's scaled-fp8 files (``scaled_fp8`` marker,
``<layer>.scale_weight``)."""

from __future__ import annotations

import re

Shapes = dict[str, tuple[int, ...]]

SD3_PREFIXES = ("model.diffusion_model.", "")
JOINT = re.compile(r"joint_blocks\.(\d+)\.")
DIFFUSERS_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.")
# SD3.5 Large has 38 joint blocks of width 2432 (64 per block), SD3/SD3.5 Medium 24 of 1536;
# Medium 3.5 (MMDiT-X) adds a second self-attention (``attn2``) to its first blocks.
SD3_LARGE_DEPTH = 38
SD3_MEDIUM_DEPTH = 24

# Whole checkpoints (ComfyUI's and SAI's) keep each part under its own prefix.
BUNDLED_TEXT = re.compile(r"^(?:text_encoders|conditioner\.embedders)\.([^.]+)\.")
BUNDLED_VAE = ("first_stage_model.", "vae.")

# CLIP text towers (transformers naming, with or without transformers 4's ``text_model.``).
CLIP_LAYER = re.compile(r"^(?:text_model\.)?encoder\.layers\.(\d+)\.self_attn\.q_proj\.weight$")
CLIP_NAMES = {768: "clip-l", 1280: "clip-g"}
T5_LAYER = re.compile(r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.q\.weight$")
T5_NAMES = {4096: "t5-xxl", 1024: "t5-large", 768: "t5-base"}


def sd3_prefix(shapes: Shapes) -> str | None:
    """The prefix of an SD3-family MMDiT's ``joint_blocks`` (original layout), or None."""
    for prefix in SD3_PREFIXES:
        if f"{prefix}joint_blocks.0.x_block.attn.qkv.weight" in shapes:
            return prefix
    return None


def is_diffusers_sd3(shapes: Shapes) -> bool:
    """A diffusers-layout SD3 transformer: joint blocks, a patch embedding, no single blocks."""
    return (
        "pos_embed.proj.weight" in shapes
        and "transformer_blocks.0.attn.add_q_proj.weight" in shapes
        and not any(k.startswith("single_transformer_blocks.") for k in shapes)
    )


def sd3_geometry(shapes: Shapes) -> tuple[int, int, bool]:
    """(depth, hidden width, has MMDiT-X ``attn2``) of an SD3 transformer in either layout."""
    prefix = sd3_prefix(shapes)
    if prefix is not None:
        blocks = {int(m[1]) for k in shapes if (m := JOINT.match(k.removeprefix(prefix)))}
        hidden = shapes[f"{prefix}x_embedder.proj.weight"][0]
        attn2 = any(".x_block.attn2." in k for k in shapes)
    else:
        blocks = {int(m[1]) for k in shapes if (m := DIFFUSERS_BLOCK.match(k))}
        hidden = shapes["pos_embed.proj.weight"][0]
        attn2 = any(".attn2." in k for k in shapes)
    return (max(blocks) + 1 if blocks else 0), hidden, attn2


def sd3_size(depth: int, attn2: bool) -> str:
    """``large``, ``medium`` (SD3.5 Medium with attn2) or ``medium`` by depth."""
    if depth >= SD3_LARGE_DEPTH:
        return "large"
    return "3.5-medium" if attn2 else "medium"


def text_encoder_shape(shapes: Shapes) -> tuple[str, int, int] | None:
    """(family, width, layers) of a lone text encoder: ``clip`` or ``t5``; None otherwise."""
    clip = [int(m[1]) for k in shapes if (m := CLIP_LAYER.match(k))]
    if clip:
        key = next(k for k in shapes if CLIP_LAYER.match(k))
        return "clip", shapes[key][0], max(clip) + 1
    t5 = [int(m[1]) for k in shapes if (m := T5_LAYER.match(k))]
    if t5:
        key = next(k for k in shapes if T5_LAYER.match(k))
        return "t5", shapes[key][1], max(t5) + 1
    return None


def text_encoder_name(family: str, width: int) -> str:
    """``clip-l``, ``clip-g``, ``t5-xxl``; for other widths the family and width."""
    table = CLIP_NAMES if family == "clip" else T5_NAMES
    return table.get(width, f"{family}-{width}")


def fp8_scaled(shapes: Shapes) -> bool:
    """ComfyUI's "scaled" fp8 files: a ``scaled_fp8`` marker and per-weight ``scale_weight``
    tensors (the weight is stored divided by it)."""
    return "scaled_fp8" in shapes or any(k.endswith(".scale_weight") for k in shapes)


def bundled_parts(shapes: Shapes) -> tuple[list[str], bool]:
    """The text encoders (by their prefix names) and whether a VAE ride in a whole checkpoint."""
    names = sorted({m[1] for k in shapes if (m := BUNDLED_TEXT.match(k))})
    return names, any(k.startswith(BUNDLED_VAE) for k in shapes)


FLUX_LORA_PREFIXES = (
    "lora_unet_double_blocks_",
    "lora_unet_single_blocks_",
    "transformer.single_transformer_blocks.",
)
XLABS_LORA = re.compile(r"^(?:diffusion_model\.)?(?:double|single)_blocks\.\d+\.processor\.")
SD3_LORA_PREFIXES = ("lora_unet_joint_blocks_", "lora_transformer_transformer_blocks_")
# Hidden widths of the full-size models, for adapters whose names both bases share.
DIT_WIDTH_BASE = {3072: "flux", 1536: "sd3", 2432: "sd3"}


def lora_base(modules: dict[str, tuple[int, ...] | None]) -> tuple[str, str] | None:
    """(base, reason) for an adapter on a Flux or SD3 transformer, from its module names
    (and, for the names both share, the input width of a ``to_q``); None for any other.
    ``modules`` maps module names to the input width their tensors show (None: unknown)."""
    names = sorted(modules)
    for name in names:
        if name.startswith(FLUX_LORA_PREFIXES) or XLABS_LORA.match(name):
            return "flux", f"Flux block module {name} -> flux"
        if name.startswith(SD3_LORA_PREFIXES):
            return "sd3", f"SD3 joint-block module {name} -> sd3"
    shared = [n for n in names if n.startswith("transformer.transformer_blocks.")]
    if not shared:
        return None
    mmdit_x = next((n for n in shared if ".attn2." in n), None)
    if mmdit_x:  # Flux's joint blocks have one attention; SD3.5 Medium's first ones two
        return "sd3", f"MMDiT-X second attention {mmdit_x} -> sd3"
    widths = {modules[n] for n in shared if n.endswith("attn.to_q") and modules[n]}
    bases = {DIT_WIDTH_BASE.get(w, "unknown") for w in widths}
    base = bases.pop() if len(bases) == 1 else "unknown"
    return base, (
        f"transformer_blocks modules ({shared[0]}) shared by Flux and SD3; "
        f"to_q input widths {sorted(widths)} -> {base}"
    )


# A diffusers folder's component for each part, by base (``model_index.json`` of the FLUX.1 and
# SD3/SD3.5 repositories).
DIFFUSERS_FOLDERS = {
    "flux": {
        "clip": "text_encoder",
        "t5": "text_encoder_2",
        "vae": "vae",
        "tokenizer": "tokenizer_2",
    },
    "sd3": {
        "clip": "text_encoder",
        "clip_g": "text_encoder_2",
        "t5": "text_encoder_3",
        "vae": "vae",
        "tokenizer": "tokenizer_3",
    },
}
