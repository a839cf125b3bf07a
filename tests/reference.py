"""Reference results computed by diffusers itself, for tests to compare against."""

from __future__ import annotations

from typing import Any

from hub import minimodels as mm


def pipeline(name: str, seed: int = 0) -> Any:
    """A diffusers pipeline of the mini model ``name`` (the weights of
    ``minimodels.mini_checkpoint(name, seed=seed)``), without tokenizers."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = mm.build_components(name, seed)
    kwargs = dict(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=None,
        unet=parts["unet"],
        scheduler=EulerDiscreteScheduler(),
    )
    if name == "sdxl":
        return StableDiffusionXLPipeline(
            **kwargs, text_encoder_2=parts["text_encoder_2"], tokenizer_2=None
        )
    return StableDiffusionPipeline(
        **kwargs, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def fused_pipeline(name: str, lora_path: Any, scale: float = 1.0) -> Any:
    """:func:`pipeline` after diffusers' ``load_lora_weights`` + ``fuse_lora``."""
    pipe = pipeline(name)
    pipe.load_lora_weights(str(lora_path))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    return pipe


def fused_ldm_state(name: str, lora_path: Any, scale: float = 1.0) -> dict[str, Any]:
    """The UNet and text-encoder weights of :func:`fused_pipeline`, in single-file (LDM)
    names."""
    from adapters import ldm_keys

    pipe = fused_pipeline(name, lora_path, scale)
    state = ldm_keys.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))
    state |= ldm_keys.clip_to_ldm(pipe.text_encoder.state_dict(), mm.TEXT_PREFIXES[name][0])
    if name == "sdxl":
        state |= ldm_keys.openclip_to_ldm(
            pipe.text_encoder_2.state_dict(), mm.TEXT_PREFIXES[name][1]
        )
    return state
