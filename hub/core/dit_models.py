"""diffusers and transformers modules of a Flux.1 model built from tensors, offline: every
config is derived from the tensors' shapes (never the full-size constants), as
:mod:`hub.core.ldm_models` does for SD1/SD2/SDXL.

Facts (sources: diffusers 0.42 ``FluxTransformer2DModel``, ``FluxPipeline`` and the
``scheduler_config.json``/``vae/config.json`` of black-forest-labs/FLUX.1-dev and -schnell;
transformers' ``T5Config``; BFL's ``flux/util.py`` ae parameters — read, not copied):

- The transformer's rotary embedding splits each head's width into three axes, (16, 56, 56)
  for the 128-wide heads of Flux.1; the split is not in the weights, so it is scaled to the
  head width with every axis even (8-wide heads: (2, 2, 4)).
- The MLP width is 4x the hidden width (diffusers' fixed ``mlp_ratio``).
- T5 v1.1 (T5-XXL): gated-GELU feed-forward (``wi_0``/``wi_1``), the head count is the
  width of ``relative_attention_bias``; ComfyUI's "scaled" fp8 T5 stores each weight divided
  by its ``scale_weight``.
- The 16-channel VAE has no quant convs; latents are ``(z - 0.1159) * 0.3611`` for Flux.1.
- A CLIP text tower has one attention head per 64 of width (CLIP-L: 12).
"""

from __future__ import annotations

import re
from typing import Any

from hub.core import dit_keys, flux_keys, sd3_keys
from hub.core.dit_map import KeyMap, Piece
from hub.core.errors import HubError

FLUX_VAE_FACTORS = {"scaling_factor": 0.3611, "shift_factor": 0.1159}
SD3_VAE_FACTORS = {"scaling_factor": 1.5305, "shift_factor": 0.0609}  # SD3/SD3.5 vae config
FLUX_ROPE = (16, 56, 56)  # Flux.1's axes for 128-wide heads
T5_BLOCK = re.compile(r"^encoder\.block\.(\d+)\.")
VAE_DOWN = re.compile(r"^encoder\.down_blocks\.(\d+)\.")
VAE_LDM_DOWN = re.compile(r"^encoder\.down\.(\d+)\.block\.0\.")


def upcast(tensors: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """Floating tensors in the compute dtype (fp8 included); ComfyUI's "scaled" fp8 weights
    multiplied back by their ``scale_weight``."""
    import torch

    out = {}
    for key, value in tensors.items():
        if key == "scaled_fp8" or key.endswith(".scale_weight"):
            continue
        scale = tensors.get(key.removesuffix("weight") + "scale_weight")
        if scale is not None:
            value = value.to(torch.float32) * scale.to(torch.float32)
        out[key] = value.to(device, dtype) if value.is_floating_point() else value.to(device)
    return out


def section(tensors: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any] | None:
    """The tensors under the first of ``prefixes`` that has any, prefix removed."""
    for prefix in prefixes:
        found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found
    return None


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Flux.1's rotary split (16, 56, 56) scaled to ``head_dim``, each axis even."""
    first = 2 * max(1, round(head_dim * FLUX_ROPE[0] / sum(FLUX_ROPE) / 2))
    second = 2 * ((head_dim - first) // 4)
    return first, second, head_dim - first - second


def transformer_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A ``FluxTransformer2DModel`` config from a transformer's shapes (either layout)."""
    geo = flux_keys.geometry(shapes)
    prefix = flux_keys.bfl_prefix(shapes)
    if prefix is None:
        head = shapes["transformer_blocks.0.attn.norm_q.weight"][0]
        context = shapes["context_embedder.weight"][1]
        pooled = shapes["time_text_embed.text_embedder.linear_1.weight"][1]
        out = shapes["proj_out.weight"][0]
    else:
        head = shapes[f"{prefix}double_blocks.0.img_attn.norm.query_norm.scale"][0]
        context = shapes[f"{prefix}txt_in.weight"][1]
        pooled = shapes[f"{prefix}vector_in.in_layer.weight"][1]
        out = shapes[f"{prefix}final_layer.linear.weight"][0]
    if geo.mlp != 4 * geo.hidden:
        raise HubError(f"a Flux MLP of width {geo.mlp} for width {geo.hidden} is not 4x")
    return {
        "patch_size": 1,
        "in_channels": geo.in_channels,
        "out_channels": out,
        "num_layers": geo.double,
        "num_single_layers": geo.single,
        "attention_head_dim": head,
        "num_attention_heads": geo.hidden // head,
        "joint_attention_dim": context,
        "pooled_projection_dim": pooled,
        "guidance_embeds": geo.guidance,
        "axes_dims_rope": rope_axes(head),
    }


def assemble(state: dict[str, Any], pieces: list[Piece]) -> Any:
    """One diffusers tensor from its pieces in an original-layout state dict (diffusers row
    order): a row VIEW when it is one piece (a row slice of a contiguous tensor), else a new
    tensor."""
    import torch

    parts = [
        (p.source_rows or (0, 0), state[p.key] if p.rows is None else state[p.key][slice(*p.rows)])
        for p in pieces
    ]
    if len(parts) == 1:
        return parts[0][1]
    return torch.cat([t for _, t in sorted(parts, key=lambda r: r[0])])


def views_from_original(
    state: dict[str, Any], keymap: KeyMap, prefix: str
) -> tuple[dict[str, Any], dict[str, list[Piece]]]:
    """An original-layout state dict (BFL's, SAI's) as diffusers tensors that are row views
    of it, so changing a fused tensor in place changes them; and the diffusers tensors that
    cannot be views (halves stored swapped) with their pieces."""
    by_param: dict[str, list[Piece]] = {}
    for module in keymap.modules:
        for piece in keymap.pieces(module) or []:
            norm = piece.key.endswith(".scale")
            base = piece.key.removesuffix(".scale").removesuffix(".weight")
            for param in ("weight",) if norm else ("weight", "bias"):
                key = f"{prefix}{base}.{'scale' if norm else param}"
                if key in state:
                    found = Piece(key, piece.rows, piece.source_rows)
                    by_param.setdefault(f"{module}.{param}", []).append(found)
    for diffusers, original in keymap.renamed.items():
        if prefix + original in state:
            by_param[diffusers] = [Piece(prefix + original)]
    out = {name: assemble(state, pieces) for name, pieces in by_param.items()}
    return out, {name: pieces for name, pieces in by_param.items() if len(pieces) > 1}


def transformer(weights: dict[str, Any]) -> tuple[Any, dict[str, list[Piece]]]:
    """A ``FluxTransformer2DModel`` whose parameters are ``weights`` (a Flux transformer's
    tensors under the file's own keys) or row views of them, so a patch written into a
    weight in place changes the model. Returns the model and the parameters that cannot be
    views (diffusers' ``norm_out``, whose halves BFL stores swapped): their pieces, for
    :func:`refresh`."""
    from diffusers import FluxTransformer2DModel

    from hub.core.ldm_models import _assemble

    shapes = {k: tuple(v.shape) for k, v in weights.items()}
    config = transformer_config(shapes)
    prefix = flux_keys.bfl_prefix(shapes)
    if prefix is None:
        model = _assemble(FluxTransformer2DModel, config, dict(weights))
        return model, {}
    geo = flux_keys.geometry(shapes)
    state, copies = views_from_original(weights, flux_keys.keymap(geo), prefix)
    return _assemble(FluxTransformer2DModel, config, state), copies


def refresh(model: Any, weights: dict[str, Any], copies: dict[str, list[Any]]) -> None:
    """Copy the current values of ``weights`` into the parameters that are not views."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, pieces in copies.items():
            params[name].copy_(assemble(weights, pieces))


def clip_text(state: dict[str, Any], act: str = "quick_gelu") -> Any:
    """A ``CLIPTextModel`` from a CLIP text tower's tensors (with or without
    ``text_model.``), ``CLIPTextModelWithProjection`` when they hold ``text_projection``
    (SD3's). ``act``: CLIP-L's ``quick_gelu``, OpenCLIP bigG's ``gelu``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from adapters import ldm_keys
    from hub.core.ldm_models import _assemble

    named = ldm_keys.clip_to_ldm(state, "")
    config = ldm_keys.clip_config_from_ldm({k: tuple(v.shape) for k, v in named.items()}, "", False)
    config["hidden_act"] = act
    projection = state.get("text_projection.weight")
    if projection is None:
        return _assemble(CLIPTextModel, CLIPTextConfig(**config), named)
    config["projection_dim"] = projection.shape[0]
    named["text_projection.weight"] = projection
    return _assemble(CLIPTextModelWithProjection, CLIPTextConfig(**config), named)


def t5_encoder(state: dict[str, Any]) -> Any:
    """A ``T5EncoderModel`` from a T5 encoder's tensors (``shared``/``encoder.*``)."""
    from transformers import T5Config, T5EncoderModel

    from hub.core.ldm_models import _assemble

    state = dict(state)
    embed = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    if embed is None:
        raise HubError("the T5 encoder has no token embedding (shared.weight)")
    state.setdefault("shared.weight", embed)
    state.setdefault("encoder.embed_tokens.weight", embed)
    bias = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    buckets, heads = bias.shape
    ff = "encoder.block.0.layer.1.DenseReluDense."
    gated = f"{ff}wi_0.weight" in state
    config = T5Config(
        vocab_size=embed.shape[0],
        d_model=embed.shape[1],
        d_kv=state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
        d_ff=state[f"{ff}{'wi_0' if gated else 'wi'}.weight"].shape[0],
        num_layers=len({m[1] for k in state if (m := T5_BLOCK.match(k))}),
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
    )
    return _assemble(T5EncoderModel, config, state)


def sd3_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """An ``SD3Transformer2DModel`` config from a transformer's diffusers-named shapes. The
    head width is the q/k RMSNorm's (SD3.5); without one, SD3's rule: one 64-wide head per
    block (as many heads as blocks)."""
    hidden, in_channels, patch, _ = shapes["pos_embed.proj.weight"]
    depth = len({m[1] for k in shapes if (m := dit_keys.DIFFUSERS_BLOCK.match(k))})
    norm = shapes.get("transformer_blocks.0.attn.norm_q.weight")
    head = norm[0] if norm else hidden // depth
    positions = shapes["pos_embed.pos_embed"][1]
    dual = tuple(
        sorted(
            {
                int(m[1])
                for k in shapes
                if (m := dit_keys.DIFFUSERS_BLOCK.match(k)) and ".attn2." in k
            }
        )
    )
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_channels,
        "num_layers": depth,
        "attention_head_dim": head,
        "num_attention_heads": hidden // head,
        "joint_attention_dim": shapes["context_embedder.weight"][1],
        "caption_projection_dim": shapes["context_embedder.weight"][0],
        "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
        "out_channels": shapes["proj_out.weight"][0] // (patch * patch),
        "pos_embed_max_size": round(positions**0.5),
        "dual_attention_layers": dual,
        "qk_norm": "rms_norm" if norm else None,
    }


def sd3_transformer(weights: dict[str, Any]) -> tuple[Any, dict[str, list[Piece]]]:
    """An ``SD3Transformer2DModel`` whose parameters are ``weights`` (either layout, under
    the file's own keys) or row views of them; as :func:`transformer`."""
    from diffusers import SD3Transformer2DModel

    from hub.core.ldm_models import _assemble

    shapes = {k: tuple(v.shape) for k, v in weights.items()}
    prefix = dit_keys.sd3_prefix(shapes)
    if prefix is None:
        state, copies = dict(weights), {}
    else:
        keymap = sd3_keys.keymap(sd3_keys.geometry(shapes))
        state, copies = views_from_original(weights, keymap, prefix)
    config = sd3_config({k: tuple(v.shape) for k, v in state.items()})
    return _assemble(SD3Transformer2DModel, config, state), copies


def vae(state: dict[str, Any], factors: dict[str, float] = FLUX_VAE_FACTORS) -> Any:
    """An ``AutoencoderKL`` from a 16-channel VAE's tensors, diffusers or LDM names (BFL's
    ``ae.safetensors``), without a prefix."""
    from diffusers import AutoencoderKL

    from hub.core.ldm_models import _assemble

    if not any(VAE_DOWN.match(k) for k in state):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        levels = len({m[1] for k in state if (m := VAE_LDM_DOWN.match(k))})
        if not levels:
            raise HubError("no VAE encoder blocks (encoder.down.N / encoder.down_blocks.N)")
        blocks = {"down_block_types": [None] * levels, "up_block_types": [None] * levels}
        state = convert_ldm_vae_checkpoint(state, blocks)
    levels = len({m[1] for k in state if (m := VAE_DOWN.match(k))})
    layers = {k.split(".")[4] for k in state if k.startswith("encoder.down_blocks.0.resnets.")}
    config = {
        "in_channels": state["encoder.conv_in.weight"].shape[1],
        "out_channels": state["decoder.conv_out.weight"].shape[0],
        "latent_channels": state["decoder.conv_in.weight"].shape[1],
        "block_out_channels": [
            state[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in range(levels)
        ],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "layers_per_block": len(layers),
        "norm_num_groups": 32,
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        **factors,
    }
    return _assemble(AutoencoderKL, config, state)
