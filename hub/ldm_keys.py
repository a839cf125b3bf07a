"""Single-file (LDM) names for diffusers and transformers weights: the UNet, the VAE, CLIP-L
and OpenCLIP text encoders. Tables from FORMATS.md §3.

The functions take and return plain ``{name: tensor}`` dicts; only the OpenCLIP fusion of
q/k/v and the VAE attention reshapes touch tensor values.
"""

from __future__ import annotations

import re
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT1_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT2_PREFIX = "conditioner.embedders.1.model."

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET.get(head, head)}.{tail}"


def unet_name(name: str, layers_per_block: int, up_has_attention: list[bool]) -> str:
    """The LDM name (without prefix) of one diffusers UNet parameter."""
    n = layers_per_block + 1
    for src, dst in _TOP.items():
        if name.startswith(src + "."):
            return dst + name[len(src) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = 1 + i * n + j
        return (
            f"input_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"input_blocks.{block}.1.{rest}"
        )
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name):
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name):
        kind, j, rest = m[1], int(m[2]), m[3]
        return (
            f"middle_block.{2 * j}.{_resnet(rest)}"
            if kind == "resnets"
            else f"middle_block.1.{rest}"
        )
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = i * n + j
        return (
            f"output_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{block}.1.{rest}"
        )
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name):
        i = int(m[1])
        slot = 2 if up_has_attention[i] else 1
        return f"output_blocks.{i * n + layers_per_block}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet parameter {name}")


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel state dict under LDM names and prefix."""
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    lpb = config["layers_per_block"]
    return {UNET_PREFIX + unet_name(k, lpb, up_attn): v for k, v in state.items()}


def _vae_name(name: str, levels: int) -> tuple[str, bool]:
    """(LDM name, whether the tensor is a mid-attention linear that LDM stores as 1x1 conv)."""
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", name):
        return f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}", m[2] != "group_norm" and m[3] == "weight"
    name = name.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", name):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}", False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", name):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}", False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", name):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}", False
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    return name, False


def vae_to_ldm(
    state: dict[str, Any], config: dict[str, Any], prefix: str = VAE_PREFIX
) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict under LDM names (mid attention as 1x1 convs)."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        name, conv = _vae_name(key, levels)
        out[prefix + name] = value.reshape(*value.shape, 1, 1) if conv else value
    return out


def clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model (4.x or 5 names) under the HF ``text_model.`` names."""
    out = {}
    for key, value in state.items():
        if key.startswith("text_projection") or key.endswith("position_ids"):
            continue
        name = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + name] = value
    return out


def openclip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model (with projection) under OpenCLIP names: q/k/v fused into
    ``in_proj``, ``text_projection`` stored transposed."""
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        prefix + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": sd["final_layer_norm.weight"],
        prefix + "ln_final.bias": sd["final_layer_norm.bias"],
    }
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    layers = sorted({int(m[1]) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    rename = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{part}"] = torch.cat(
                [sd[f"{src}self_attn.{p}_proj.{part}"] for p in "qkv"], dim=0
            )
            for a, b in rename.items():
                out[f"{dst}{b}.{part}"] = sd[f"{src}{a}.{part}"]
    return out
