"""Benchmark inputs: full-size SD1.5-shaped files with random weights."""

from __future__ import annotations

import json
from pathlib import Path


def sd15_modules():
    """The SD1.5 UNet, VAE and CLIP-L text encoder on the meta device (shapes, no memory)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from hub.core.topologies import CLIP_L, SD1_UNET, VAE

    with torch.device("meta"):
        return (
            UNet2DConditionModel(**SD1_UNET),
            AutoencoderKL(**VAE),
            CLIPTextModel(CLIPTextConfig(**CLIP_L)),
        )


def sd15_ldm_shapes(unet=None, vae=None, clip=None) -> dict[str, tuple[int, ...]]:
    """Every tensor of an SD1.5 single-file checkpoint: its LDM name and shape."""
    from adapters import ldm_keys

    if unet is None:
        unet, vae, clip = sd15_modules()
    shapes = ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config))
    shapes |= ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config))
    shapes |= ldm_keys.clip_to_ldm(clip.state_dict(), ldm_keys.SD1_TEXT_PREFIX)
    return {k: tuple(v.shape) for k, v in shapes.items()}


def build_sd15(work: Path, checkpoints: int, loras: int) -> tuple[list[Path], list[Path], Path]:
    """Full-size SD1.5-shaped fp16 checkpoints (random weights, real LDM names and shapes,
    about 2 GB each), kohya LoRAs of rank 64 on the UNet attention and every text-encoder
    Linear, and the diffusers config folder; under ``work``."""
    import torch

    from hub.core.safetensors_io import TensorSpec, write_safetensors

    unet, vae, clip = sd15_modules()
    config = work / "config"
    unet.save_config(config / "unet")
    clip.config.save_pretrained(config / "text_encoder")
    (config / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    shapes = sd15_ldm_shapes(unet, vae, clip)
    gen = torch.Generator().manual_seed(0)
    models = work / "models"
    ckpts = []
    for i in range(checkpoints):
        path = models / f"sd15-{i}.safetensors"
        write_safetensors(
            path,
            [TensorSpec(k, "F16", v) for k, v in shapes.items()],
            lambda s: (torch.randn(s.shape, generator=gen) * 0.02).half(),
        )
        ckpts.append(path)
    targets, texts = _lora_targets(unet, clip)
    lora_paths = []
    for j in range(loras):
        path = models / f"lora-{j}.safetensors"
        write_lora(path, targets, texts, 64, gen)
        lora_paths.append(path)
    return ckpts, lora_paths, config


def _lora_targets(unet, clip) -> tuple[list, list]:
    """The UNet attention Linears kohya trains and every text-encoder Linear: (name, module)."""
    import torch

    targets = [
        (n, m)
        for n, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear)
        and n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0", "proj_in", "proj_out")
    ]
    texts = [(n, m) for n, m in clip.named_modules() if isinstance(m, torch.nn.Linear)]
    return targets, texts


def write_lora(path: Path, targets: list, texts: list, rank: int, gen) -> None:
    """A kohya LoRA (fp16, alpha = rank / 2) of ``rank`` on the given modules."""
    import torch

    from hub.core.safetensors_io import TensorSpec, write_safetensors

    state = {}
    for prefix, mods in (("lora_unet_", targets), ("lora_te_text_model_", texts)):
        for n, m in mods:
            key = prefix + n.replace(".", "_")
            state[f"{key}.lora_down.weight"] = (
                torch.randn(rank, m.in_features, generator=gen) * 0.01
            ).half()
            state[f"{key}.lora_up.weight"] = (
                torch.randn(m.out_features, rank, generator=gen) * 0.01
            ).half()
            state[f"{key}.alpha"] = torch.tensor(rank / 2).half()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(
        path,
        [
            TensorSpec(k, "F16" if v.dtype == torch.float16 else "F32", tuple(v.shape))
            for k, v in state.items()
        ],
        lambda s: state[s.name],
    )


def build_small_lora(path: Path, rank: int = 1) -> None:
    """An SD1.5 kohya LoRA of rank 1 on the UNet attention and the text encoder (about 1 MB)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from hub.core.topologies import CLIP_L, SD1_UNET

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD1_UNET)
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    targets, texts = _lora_targets(unet, clip)
    write_lora(path, targets, texts, rank, torch.Generator().manual_seed(1))
