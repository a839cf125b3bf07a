"""diffusers and transformers modules built from a single-file (LDM) state dict, offline:
configs are derived from the tensor shapes (:mod:`adapters.ldm_keys`), weights are converted
with diffusers' own single-file functions.

The modules' parameters share storage with the LDM tensors they came from (diffusers'
conversion renames and slices; nothing is copied), so a patch applied to an LDM key in place
is a patch to the live model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters import ldm_keys
from hub.core.errors import HubError, InvalidFileError

TEXT_LAYOUT = {  # base -> [(component, LDM prefix, OpenCLIP names?)]
    "sd1": [("text_encoder", ldm_keys.SD1_TEXT_PREFIX, False)],
    "sd2": [("text_encoder", ldm_keys.SD2_TEXT_PREFIX, True)],
    "sdxl": [
        ("text_encoder", ldm_keys.SDXL_TEXT1_PREFIX, False),
        ("text_encoder_2", ldm_keys.SDXL_TEXT2_PREFIX, True),
    ],
}
SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def check_base(base: str, source: Path | str) -> None:
    """Refuse bases whose layout is not sd1, sd2 or sdxl."""
    if base not in TEXT_LAYOUT:
        raise HubError(
            f"{source}: only sd1, sd2 and sdxl checkpoints are supported (this is {base})"
        )


def _fit_keys(model: Any, state: dict[str, Any]) -> dict[str, Any]:
    """transformers 5's CLIPTextModel has no ``text_model.`` prefix; older versions do."""
    want = set(model.state_dict())
    if want <= set(state):
        return {k: state[k] for k in want}
    stripped = {k.removeprefix("text_model."): v for k, v in state.items()}
    return {k: stripped[k] for k in want if k in stripped}


def _assemble(model_cls: Any, config: Any, state: dict[str, Any]) -> Any:
    """Build on the meta device and take the given tensors as parameters (no copy)."""
    import torch

    with torch.device("meta"):
        model = (
            model_cls.from_config(config)
            if hasattr(model_cls, "from_config")
            else (model_cls(config))
        )
    state = _fit_keys(model, state)
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise HubError(f"conversion left {len(missing)} weights unset, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, assign=True, strict=True)
    _materialize_buffers(model)
    return model.eval()


def _materialize_buffers(model: Any) -> None:
    """Non-persistent buffers are not in any state dict and stay on the meta device after
    building there: recreate the one kind these models have (CLIP's ``position_ids``)."""
    import torch

    device = next(model.parameters()).device
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            if name != "position_ids":
                raise HubError(f"{type(module).__name__}.{name} has no value after loading")
            ids = torch.arange(buffer.shape[-1], dtype=buffer.dtype, device=device)
            ids = ids.expand(buffer.shape)
            module.register_buffer(name, ids.clone(), persistent=False)


def components(checkpoint: dict[str, Any], base: str) -> dict[str, Any]:
    """``unet``, ``vae``, ``text_encoder`` (and ``text_encoder_2`` for sdxl) modules whose
    parameters are the given LDM tensors (cast them first: casting copies)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    shapes = {k: tuple(v.shape) for k, v in checkpoint.items()}
    unet_config = ldm_keys.unet_config_from_ldm(shapes, base)
    vae_config = ldm_keys.vae_config_from_ldm(shapes, base=base)
    parts = {
        "unet": _assemble(
            UNet2DConditionModel,
            unet_config,
            convert_ldm_unet_checkpoint(checkpoint, unet_config),
        ),
        "vae": _assemble(
            AutoencoderKL, vae_config, convert_ldm_vae_checkpoint(checkpoint, vae_config)
        ),
    }
    for component, prefix, openclip in TEXT_LAYOUT[base]:
        config = ldm_keys.clip_config_from_ldm(shapes, prefix, openclip)
        if base == "sd2" and config["num_hidden_layers"] == 24:
            config["num_hidden_layers"] = 23  # diffusers drops SD2's last layer
        cls = CLIPTextModelWithProjection if component == "text_encoder_2" else CLIPTextModel
        text_config = CLIPTextConfig(**config)
        if openclip:
            with torch.device("meta"):
                template = cls(text_config)
            state = convert_open_clip_checkpoint(template, checkpoint, prefix=prefix)
        else:
            state = convert_ldm_clip_checkpoint(checkpoint, remove_prefix=prefix)
        parts[component] = _assemble(cls, text_config, state)
    return parts


def vae(state: dict[str, Any], base: str) -> Any:
    """An AutoencoderKL from a VAE file's LDM tensors (with or without the
    ``first_stage_model.`` prefix)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    prefix = ldm_keys.VAE_PREFIX if any(k.startswith(ldm_keys.VAE_PREFIX) for k in state) else ""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    config = ldm_keys.vae_config_from_ldm(shapes, prefix, base)
    return _assemble(AutoencoderKL, config, convert_ldm_vae_checkpoint(state, config))


def component_weights(folder: Path, meta: bool = False) -> dict[str, Any]:
    """Every tensor of a diffusers component folder's safetensors files (``meta``: shapes
    only, read from the headers)."""
    from safetensors.torch import load_file

    from hub.core.formats import read_header

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InvalidFileError(folder, "no safetensors weights (convert .bin folders first)")
    state: dict[str, Any] = {}
    for file in files:
        if meta:
            import torch

            state |= {
                k: torch.empty(v.shape, device="meta") for k, v in read_header(file).tensors.items()
            }
        else:
            state |= load_file(file)
    return state


def folder_to_ldm(folder: Path, base: str, meta: bool = False) -> dict[str, Any]:
    """The single-file (LDM) state dict of a diffusers folder (``meta``: shapes only)."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state = ldm_keys.unet_to_ldm(component_weights(folder / "unet", meta), unet_config)
    state |= ldm_keys.vae_to_ldm(component_weights(folder / "vae", meta), vae_config)
    for component, prefix, openclip in TEXT_LAYOUT[base]:
        weights = component_weights(folder / component, meta)
        state |= (
            ldm_keys.openclip_to_ldm(weights, prefix)
            if openclip
            else ldm_keys.clip_to_ldm(weights, prefix)
        )
    return state


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' notices (optional dependencies, configs) below
    errors: library code never prints."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    diffusers_logging.set_verbosity_error()
