"""Mini Stable Diffusion models: the real architectures' key names, topology and text
widths with reduced channel counts and random weights (ARCHITECTURE.md "Test models").

Used by ``hub demo`` and by the tests. Built by diffusers and transformers; single-file
checkpoints are written in the LDM layout with :mod:`adapters.ldm_keys`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from adapters import ldm_keys
from hub.core import topologies

# Mini = the real topology with reduced channels and one text layer (ARCHITECTURE.md).
_SMALL = {"norm_num_groups": 32, "sample_size": 8}
SD1_UNET = {**topologies.SD1_UNET, **_SMALL, "block_out_channels": (32, 64, 64, 64)}
SD2_UNET = {**SD1_UNET, "cross_attention_dim": 1024, "use_linear_projection": True}
SDXL_UNET = {
    **topologies.SDXL_UNET,
    **_SMALL,
    "block_out_channels": (32, 64, 128),
    "transformer_layers_per_block": 1,
    "attention_head_dim": (2, 4, 8),
}
VAE = {
    **topologies.VAE,
    "layers_per_block": 1,
    "block_out_channels": (32, 64, 64, 64),
    "sample_size": 64,
}
_ONE_LAYER = {"num_hidden_layers": 1, "intermediate_size": 256}
CLIP_L = {**topologies.CLIP_L, **_ONE_LAYER}
CLIP_H = {**topologies.CLIP_H, **_ONE_LAYER}
CLIP_G = {**topologies.CLIP_G, **_ONE_LAYER}

SPECS = {
    "sd1": {"unet": SD1_UNET, "text": [("clip", CLIP_L)]},
    "sd1-inpaint": {"unet": {**SD1_UNET, "in_channels": 9}, "text": [("clip", CLIP_L)]},
    "sd2": {"unet": SD2_UNET, "text": [("openclip", CLIP_H)]},
    "sdxl": {"unet": SDXL_UNET, "text": [("clip", CLIP_L), ("openclip-proj", CLIP_G)]},
}
TEXT_PREFIXES = {
    "sd1": [ldm_keys.SD1_TEXT_PREFIX],
    "sd1-inpaint": [ldm_keys.SD1_TEXT_PREFIX],
    "sd2": [ldm_keys.SD2_TEXT_PREFIX],
    "sdxl": [ldm_keys.SDXL_TEXT1_PREFIX, ldm_keys.SDXL_TEXT2_PREFIX],
}


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def build_components(name: str, seed: int = 0) -> dict[str, object]:
    """The diffusers/transformers modules of a mini model, random weights from ``seed``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    spec = SPECS[name]
    _seeded(seed)
    parts: dict[str, object] = {
        "unet": UNet2DConditionModel(**spec["unet"]),
        "vae": AutoencoderKL(**VAE),
    }
    for i, (style, cfg) in enumerate(spec["text"]):
        config = CLIPTextConfig(**cfg)
        cls = CLIPTextModelWithProjection if style == "openclip-proj" else CLIPTextModel
        parts["text_encoder" if i == 0 else "text_encoder_2"] = cls(config)
    for module in parts.values():
        module.eval()
    return parts


def to_single_file(name: str, parts: dict[str, object]) -> dict[str, torch.Tensor]:
    """The LDM single-file state dict of a mini model."""
    unet, vae = parts["unet"], parts["vae"]
    state = ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config))
    state |= ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config))
    for (style, _), prefix, key in zip(
        SPECS[name]["text"], TEXT_PREFIXES[name], ("text_encoder", "text_encoder_2"), strict=False
    ):
        sd = parts[key].state_dict()
        state |= (
            ldm_keys.clip_to_ldm(sd, prefix)
            if style == "clip"
            else ldm_keys.openclip_to_ldm(sd, prefix)
        )
    return {k: v.contiguous() for k, v in state.items()}


def save_diffusers_configs(parts: dict[str, object], folder: Path) -> None:
    """The configs of each component, as a diffusers folder holds them (no weights needed)."""
    for key, module in parts.items():
        sub = folder / key
        sub.mkdir(parents=True, exist_ok=True)
        if hasattr(module, "save_config"):
            module.save_config(sub)  # diffusers
        else:
            module.config.save_pretrained(sub)  # transformers


def _unet_shapes(name: str) -> dict[str, tuple[int, ...]]:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SPECS[name]["unet"])
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


def lycoris_state(
    name: str, algo: str, rank: int = 4, seed: int = 2
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LyCORIS-style state dict in kohya naming with the FORMATS.md §4 tensors of ``algo``
    (locon with 3x3 convs, loha, lokr, full with ``diff_b`` on biased layers, ia3, dora) on
    the mini model's attention and resnet modules, and its metadata. Shapes are the ones
    LyCORIS writes; values random."""
    shapes = _unet_shapes(name)
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    state: dict[str, torch.Tensor] = {}
    linear = [
        k[: -len(".weight")]
        for k in shapes
        if k.endswith(
            tuple(
                f"{t}.weight" for t in ("attn1.to_q", "attn2.to_k", "attn2.to_v", "attn1.to_out.0")
            )
        )
    ]
    convs = [
        k[: -len(".weight")]
        for k in shapes
        if k.endswith(("conv1.weight", "conv2.weight")) and "resnets" in k
    ]
    for module in linear + (convs if algo in ("locon", "loha", "lokr") else []):
        shape = shapes[module + ".weight"]
        out_f, in_f, *kernel = shape
        key = "lora_unet_" + module.replace(".", "_")
        state[key + ".alpha"] = torch.tensor(float(rank))
        if algo in ("locon", "dora"):
            state[key + ".lora_down.weight"] = rnd(rank, in_f, *kernel)
            state[key + ".lora_up.weight"] = rnd(out_f, rank, *([1, 1] if kernel else []))
            if algo == "dora":
                state[key + ".dora_scale"] = rnd(out_f, 1).abs() + 1
        elif algo == "loha":
            flat_in = in_f * (kernel[0] * kernel[1] if kernel else 1)
            for w in ("w1", "w2"):
                state[f"{key}.hada_{w}_a"] = rnd(out_f, rank)
                state[f"{key}.hada_{w}_b"] = rnd(rank, flat_in)
        elif algo == "lokr":
            a = 4 if out_f % 4 == 0 else 1
            c = 4 if in_f % 4 == 0 else 1
            state[key + ".lokr_w1"] = rnd(a, c)
            state[key + ".lokr_w2_a"] = rnd(out_f // a, rank)
            state[key + ".lokr_w2_b"] = rnd(
                rank, (in_f // c) * (kernel[0] * kernel[1] if kernel else 1)
            )
        elif algo == "full":
            del state[key + ".alpha"]
            state[key + ".diff"] = rnd(*shape)
            if module + ".bias" in shapes:  # LyCORIS keeps the bias change beside it
                state[key + ".diff_b"] = rnd(out_f)
        elif algo == "ia3":
            del state[key + ".alpha"]
            state[key + ".weight"] = rnd(out_f)
            state[key + ".on_input"] = torch.tensor(0)
        else:
            raise ValueError(algo)
    metadata = {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": algo})}
    if algo == "ia3":  # IA3 shapes do not show the context width; real files carry this
        metadata["ss_base_model_version"] = f"{name.replace('sd', 'sd_v')}"
    return state, metadata


def embedding_state(name: str, vectors: int = 2, seed: int = 3) -> dict[str, torch.Tensor]:
    """A textual-inversion embedding: A1111 ``emb_params`` for sd1/sd2, the ``clip_l``/
    ``clip_g`` pair for sdxl."""
    g = torch.Generator().manual_seed(seed)
    if name == "sdxl":
        state = {
            "clip_l": torch.randn(vectors, 768, generator=g),
            "clip_g": torch.randn(vectors, 1280, generator=g),
        }
    else:
        width = {"sd1": 768, "sd2": 1024}[name]
        state = {"emb_params": torch.randn(vectors, width, generator=g)}
    return state


def hypernetwork_object(name: str, seed: int = 6) -> dict[object, object]:
    """An A1111 hypernetwork as ``torch.save`` writes it (FORMATS.md §6): for each
    self-attention width of the mini UNet and its context width, a key and a value module of
    layer structure 1-2-1 (linear activation), with small random weights."""
    g = torch.Generator().manual_seed(seed)
    unet = SPECS[name]["unet"]
    levels = zip(unet["block_out_channels"], unet["down_block_types"], strict=True)
    widths = sorted({c for c, t in levels if "CrossAttn" in t} | {unet["cross_attention_dim"]})
    obj: dict[object, object] = {}
    for width in widths:
        pair = []
        for _ in (0, 1):
            pair.append(
                {
                    "linear.0.weight": torch.randn(width * 2, width, generator=g) * 0.05,
                    "linear.0.bias": torch.randn(width * 2, generator=g) * 0.05,
                    "linear.1.weight": torch.randn(width, width * 2, generator=g) * 0.05,
                    "linear.1.bias": torch.randn(width, generator=g) * 0.05,
                }
            )
        obj[width] = pair
    return obj | {
        "layer_structure": [1, 2, 1],
        "activation_func": "linear",
        "is_layer_norm": False,
        "weight_initialization": "Normal",
        "use_dropout": False,
        "activate_output": False,
        "name": f"mini-{name}-hypernetwork",
        "step": 1000,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
    }


def vae_state(seed: int = 4) -> dict[str, torch.Tensor]:
    """A standalone VAE in the LDM layout (keys without prefix)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE)
    return ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config), prefix="")
