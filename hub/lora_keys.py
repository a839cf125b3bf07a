"""LoRA key layouts: kohya (``lora_unet_…``, flattened names) and PEFT/diffusers
(``unet.<module>.lora_A.weight``). Flattened kohya names are matched against the module names
of the base's real UNet topology (diffusers and LDM spellings), never split on ``_``."""

from __future__ import annotations

import re
from functools import cache

from hub import ldm_keys, topologies

_TEXT = re.compile(r"^(text_model_)?encoder_layers_(\d+)_(self_attn_(q|k|v|out)_proj|mlp_fc[12])$")


@cache
def unet_modules(base: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
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
