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


# --- configs derived from LDM shapes (channel counts, depths and widths are all in the weights;
# attention head counts are not, and follow the base's convention) -----------------------


def _indices(shapes: dict[str, tuple[int, ...]], pattern: str) -> set[int]:
    rx = re.compile(pattern)
    return {int(m[1]) for k in shapes if (m := rx.match(k))}


def unet_config_from_ldm(shapes: dict[str, tuple[int, ...]], base: str) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel config for an LDM UNet, from its tensor shapes."""
    p = UNET_PREFIX
    n_input = max(_indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\.")) + 1
    levels = len(_indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\.0\.op\.weight")) + 1
    lpb = n_input // levels - 1
    channels, down_types, depths = [], [], []
    for i in range(levels):
        first = 1 + i * (lpb + 1)
        channels.append(shapes[f"{p}input_blocks.{first}.0.out_layers.3.weight"][0])
        has_attn = f"{p}input_blocks.{first}.1.proj_in.weight" in shapes
        down_types.append("CrossAttnDownBlock2D" if has_attn else "DownBlock2D")
        depths.append(
            len(
                _indices(
                    shapes,
                    re.escape(f"{p}input_blocks.{first}.1.") + r"transformer_blocks\.(\d+)\.",
                )
            )
            or 1
        )
    up_types = []
    for i in range(levels):
        block = i * (lpb + 1)
        has_attn = f"{p}output_blocks.{block}.1.proj_in.weight" in shapes
        up_types.append("CrossAttnUpBlock2D" if has_attn else "UpBlock2D")
    to_k = next(v for k, v in sorted(shapes.items()) if k.endswith("attn2.to_k.weight"))
    proj_in = next(v for k, v in sorted(shapes.items()) if k.endswith(".proj_in.weight"))
    heads = [8] * levels if base == "sd1" else [max(1, c // 64) for c in channels]
    config: dict[str, Any] = {
        "sample_size": {"sd1": 64, "sd2": 96, "sdxl": 128}.get(base, 64),
        "in_channels": shapes[f"{p}input_blocks.0.0.weight"][1],
        "out_channels": shapes[f"{p}out.2.weight"][0],
        "layers_per_block": lpb,
        "block_out_channels": channels,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "cross_attention_dim": to_k[1],
        "attention_head_dim": heads,
        "use_linear_projection": len(proj_in) == 2,
        "transformer_layers_per_block": depths,
        "norm_num_groups": 32,
    }
    label = shapes.get(f"{p}label_emb.0.0.weight")
    if label is not None:
        config |= {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": label[1],
        }
    return config


def vae_config_from_ldm(
    shapes: dict[str, tuple[int, ...]], prefix: str = VAE_PREFIX, base: str = "sd1"
) -> dict[str, Any]:
    """A diffusers AutoencoderKL config for an LDM VAE, from its tensor shapes."""
    levels = len(_indices(shapes, re.escape(prefix) + r"encoder\.down\.(\d+)\.block\.0\."))
    lpb = len(_indices(shapes, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."))
    channels = [shapes[f"{prefix}encoder.down.{i}.block.0.conv2.weight"][0] for i in range(levels)]
    return {
        "in_channels": shapes[f"{prefix}encoder.conv_in.weight"][1],
        "out_channels": shapes[f"{prefix}decoder.conv_out.weight"][0],
        "latent_channels": shapes[f"{prefix}post_quant_conv.weight"][0],
        "layers_per_block": lpb,
        "block_out_channels": channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "norm_num_groups": 32,
        "scaling_factor": 0.13025 if base == "sdxl" else 0.18215,
        "sample_size": {"sd1": 512, "sd2": 768, "sdxl": 1024}.get(base, 512),
    }


def clip_config_from_ldm(
    shapes: dict[str, tuple[int, ...]], prefix: str, openclip: bool
) -> dict[str, Any]:
    """A transformers CLIPTextConfig (as a dict) for a single-file text encoder."""
    if openclip:
        tok = shapes[prefix + "token_embedding.weight"]
        pos = shapes[prefix + "positional_embedding"]
        layers = _indices(shapes, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
        inter = shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]
        proj = shapes.get(prefix + "text_projection")
    else:
        t = prefix + "text_model."
        tok = shapes[t + "embeddings.token_embedding.weight"]
        pos = shapes[t + "embeddings.position_embedding.weight"]
        layers = _indices(shapes, re.escape(t) + r"encoder\.layers\.(\d+)\.")
        inter = shapes[t + "encoder.layers.0.mlp.fc1.weight"][0]
        proj = None
    hidden = tok[1]
    return {
        "vocab_size": tok[0],
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": pos[0],
        "hidden_act": "gelu" if openclip else "quick_gelu",
        "projection_dim": proj[1] if proj else hidden,
    }


_RESNET_BACK = {v: k for k, v in _RESNET.items()}
_TOP_BACK = {v: k for k, v in _TOP.items()}


def _resnet_back(rest: str) -> str:
    for ldm, diffusers in _RESNET_BACK.items():
        if rest.startswith(ldm + "."):
            return diffusers + rest[len(ldm) :]
    return rest


def unet_diffusers_name(
    name: str, layers_per_block: int, up_has_attention: list[bool]
) -> str | None:
    """The diffusers name of an LDM UNet parameter (without prefix): the inverse of
    :func:`unet_name`; None for names outside the table."""
    n = layers_per_block + 1
    for ldm, diffusers in _TOP_BACK.items():
        if name.startswith(ldm + "."):
            return diffusers + name[len(ldm) :]
    if m := re.match(r"input_blocks\.(\d+)\.0\.op\.(.*)", name):
        return f"down_blocks.{int(m[1]) // n - 1}.downsamplers.0.conv.{m[2]}"
    if m := re.match(r"input_blocks\.(\d+)\.([01])\.(.*)", name):
        b = int(m[1]) - 1
        i, j = b // n, b % n
        return (
            f"down_blocks.{i}.resnets.{j}.{_resnet_back(m[3])}"
            if m[2] == "0"
            else f"down_blocks.{i}.attentions.{j}.{m[3]}"
        )
    if m := re.match(r"middle_block\.([012])\.(.*)", name):
        return (
            f"mid_block.attentions.0.{m[2]}"
            if m[1] == "1"
            else f"mid_block.resnets.{int(m[1]) // 2}.{_resnet_back(m[2])}"
        )
    if m := re.match(r"output_blocks\.(\d+)\.([012])\.(.*)", name):
        b, slot, rest = int(m[1]), int(m[2]), m[3]
        i, j = b // n, b % n
        if slot == 0:
            return f"up_blocks.{i}.resnets.{j}.{_resnet_back(rest)}"
        if (
            rest.startswith("conv.")
            and j == layers_per_block
            and slot == (2 if up_has_attention[i] else 1)
        ):
            return f"up_blocks.{i}.upsamplers.0.{rest}"
        return f"up_blocks.{i}.attentions.{j}.{rest}" if slot == 1 else None
    return None
