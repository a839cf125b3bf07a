"""LoRA key layouts: kohya (``lora_unet_…``, flattened names) and PEFT/diffusers
(``unet.<module>.lora_A.weight``). Flattened kohya names are matched against the module names
of the base's real UNet topology (diffusers and LDM spellings), never split on ``_``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from adapters import ldm_keys
from hub.core import dit_map, flux_keys, sd3_keys, topologies

_TEXT = re.compile(r"^(text_model_)?encoder_layers_(\d+)_(self_attn_(q|k|v|out)_proj|mlp_fc[12])$")


def unet_modules(
    shapes: dict[str, tuple[int, ...]], base: str
) -> tuple[dict[str, str], dict[str, str]]:
    """For a checkpoint's UNet weights: flattened diffusers module name -> LDM weight key, and
    flattened LDM module name -> LDM weight key (both spellings kohya files use)."""
    return _unet_tables(
        tuple(k for k in shapes if k.startswith(ldm_keys.UNET_PREFIX) and k.endswith(".weight")),
        base,
    )


@cache
def _unet_tables(keys: tuple[str, ...], base: str) -> tuple[dict[str, str], dict[str, str]]:
    config = topologies.UNETS[base]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    by_diffusers, by_ldm = {}, {}
    for key in keys:
        ldm = key[len(ldm_keys.UNET_PREFIX) : -len(".weight")]
        diffusers = ldm_keys.unet_diffusers_name(
            ldm + ".weight", config["layers_per_block"], up_attn
        )
        by_ldm[ldm.replace(".", "_")] = key
        if diffusers is not None:
            by_diffusers[diffusers.removesuffix(".weight").replace(".", "_")] = key
    return by_diffusers, by_ldm


@cache
def topology_modules(base: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """For the base's real UNet: flattened diffusers name -> module, flattened LDM name ->
    module, and module -> flattened LDM name (layers with weights only)."""
    import torch
    from diffusers import UNet2DConditionModel

    config = topologies.UNETS[base]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    names = [n for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    by_diffusers = {n.replace(".", "_"): n for n in names}
    to_ldm = {
        n: ldm_keys.unet_name(n + ".weight", config["layers_per_block"], up_attn)
        .removesuffix(".weight")
        .replace(".", "_")
        for n in names
    }
    return by_diffusers, {v: k for k, v in to_ldm.items()}, to_ldm


def text_module(flat: str) -> str | None:
    """``encoder_layers_0_self_attn_q_proj`` -> ``encoder.layers.0.self_attn.q_proj``."""
    m = _TEXT.match(flat)
    if not m:
        return None
    tail = m[3].replace("self_attn_", "self_attn.").replace("mlp_", "mlp.")
    return f"{'text_model.' if m[1] else ''}encoder.layers.{m[2]}.{tail}"


@dataclass(frozen=True)
class Target:
    """Where an adapter module lands in a single-file checkpoint: a weight key, and for
    OpenCLIP's fused ``in_proj`` the rows of q, k or v."""

    key: str
    rows: tuple[int, int] | None = None


_OPENCLIP = {"self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _text_target(
    component: str, inner: str, base: str, shapes: dict[str, tuple[int, ...]]
) -> Target | None:
    inner = inner.removeprefix("text_model.")
    if base == "sd1" or (base == "sdxl" and component == "text_encoder"):
        prefix = ldm_keys.SD1_TEXT_PREFIX if base == "sd1" else ldm_keys.SDXL_TEXT1_PREFIX
        return Target(f"{prefix}text_model.{inner}.weight")
    prefix = ldm_keys.SD2_TEXT_PREFIX if base == "sd2" else ldm_keys.SDXL_TEXT2_PREFIX
    m = re.match(r"encoder\.layers\.(\d+)\.(.+)$", inner)
    if not m:
        return None
    block = f"{prefix}transformer.resblocks.{m[1]}."
    qkv = re.match(r"self_attn\.([qkv])_proj$", m[2])
    if qkv:
        key = block + "attn.in_proj_weight"
        width = shapes.get(key, (0,))[0] // 3
        i = "qkv".index(qkv[1])
        return Target(key, (i * width, (i + 1) * width))
    return Target(block + _OPENCLIP[m[2]] + ".weight") if m[2] in _OPENCLIP else None


def dit_pieces(base: str, shapes: dict[str, tuple[int, ...]]) -> dit_map.PiecesOf | None:
    """For a Flux or SD3 transformer file of ``base``: adapter module name -> the pieces of
    the file's weights it changes (see :mod:`hub.core.dit_map`); None for any other model."""
    if base == "flux" and flux_keys.is_flux(shapes):
        return flux_keys.lora_targets(shapes)
    if base == "sd3" and sd3_keys.is_sd3(shapes):
        return sd3_keys.lora_targets(shapes)
    return None


def targets(base: str, shapes: dict[str, tuple[int, ...]]) -> Callable[[str], Target | None]:
    """Where each adapter module (kohya or PEFT naming) lands in a model of ``base`` with
    these checkpoint shapes: a function of the module name, None for no target. The name
    tables are built once per call."""
    pieces_of = dit_pieces(base, shapes)
    if pieces_of is not None:

        def dit_target(module: str) -> Target | None:
            found = dit_map.piece_target(pieces_of, module)
            return Target(*found) if found else None

        return dit_target
    if base not in topologies.UNETS:
        return lambda module: None
    by_diffusers, by_ldm = unet_modules(shapes, base)

    def target(module: str) -> Target | None:
        if module.startswith(("lora_unet_", "unet.")):
            flat = module.removeprefix("lora_unet_").removeprefix("unet.").replace(".", "_")
            key = by_diffusers.get(flat) or by_ldm.get(flat)
            return Target(key) if key else None
        for prefix, component in (
            ("lora_te2_", "text_encoder_2"),
            ("lora_te1_", "text_encoder"),
            ("lora_te_", "text_encoder"),
            ("text_encoder_2.", "text_encoder_2"),
            ("text_encoder.", "text_encoder"),
        ):
            if module.startswith(prefix):
                rest = module[len(prefix) :]
                inner = rest if prefix.endswith(".") else text_module(rest)
                return _text_target(component, inner, base, shapes) if inner else None
        return None

    return target
