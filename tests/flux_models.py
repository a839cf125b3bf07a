"""Tiny Flux.1, SD3 and text-encoder files built by diffusers/transformers/peft from configs
with random weights, cached on disk like tests/minimodels.py. BFL-layout files come from
:func:`hub.core.flux_keys.bfl_from_diffusers` (checked against diffusers' own converter in
tests/test_flux.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from minimodels import CACHE_ROOT
from safetensors.torch import load_file, save_file

from hub.core import dit_map, flux_keys, sd3_keys

FLUX = dict(
    patch_size=1,
    in_channels=64,  # the packed latent of a 16-channel VAE (2x2 patches), as Flux.1's
    num_layers=1,
    num_single_layers=2,
    attention_head_dim=8,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    axes_dims_rope=(2, 2, 4),
)
SD3 = dict(
    sample_size=16,
    patch_size=2,
    in_channels=4,
    num_layers=2,
    attention_head_dim=8,
    num_attention_heads=2,
    joint_attention_dim=32,
    caption_projection_dim=16,
    pooled_projection_dim=32,
    out_channels=4,
    pos_embed_max_size=16,
)
TORCH_DTYPES = {
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
VARIANT_INPUT = {"dev": 1, "schnell": 1, "fill": 6, "depth": 2}
RANK = 4


def _path(kind: str, *args: object) -> Path:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for module in (flux_keys, sd3_keys, dit_map):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(json.dumps([kind, *args], default=str).encode())
    folder = CACHE_ROOT / "flux" / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{'-'.join(map(str, args))}.safetensors"


def _save(state: dict[str, torch.Tensor], target: Path) -> Path:
    tmp = target.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp)
    tmp.rename(target)
    return target


def flux_transformer(variant: str = "dev", seed: int = 0):
    """A tiny FluxTransformer2DModel: ``dev`` (guidance embedder), ``schnell``, or the
    Fill/Depth input widths."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    config = dict(FLUX, guidance_embeds=variant != "schnell")
    config["in_channels"] = FLUX["in_channels"] * VARIANT_INPUT[variant]
    config["out_channels"] = FLUX["in_channels"]
    model = FluxTransformer2DModel(**config)
    with torch.no_grad():  # diffusers zero-inits some layers; random everywhere tests more
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def flux_file(variant: str = "dev", layout: str = "bfl", dtype: str = "F32", seed: int = 0) -> Path:
    """A tiny Flux transformer file: ``bfl`` (no prefix), ``comfy`` (a whole checkpoint:
    ``model.diffusion_model.`` plus text encoders and VAE) or ``diffusers``."""
    target = _path("flux", variant, layout, dtype, *([seed] if seed else []))
    if target.is_file():
        return target
    state = flux_transformer(variant, seed).state_dict()
    if layout == "bfl":
        state = flux_keys.bfl_from_diffusers(state)
    elif layout == "comfy":
        state = flux_keys.bfl_from_diffusers(state, "model.diffusion_model.")
        state |= {f"text_encoders.clip_l.transformer.{k}": v for k, v in clip_state(32).items()}
        state |= {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5_state().items()}
        state |= vae16_ldm_state("vae.")
    return _save({k: v.to(TORCH_DTYPES[dtype]) for k, v in state.items()}, target)


CLIP_L = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=1,  # one per 64 of width, as sd-hub derives it from the shapes
    vocab_size=49408,  # sd-hub's shipped CLIP tokenizer
    max_position_embeddings=77,
    hidden_act="quick_gelu",
)
T5 = dict(
    d_model=32,
    d_ff=37,
    d_kv=8,
    num_layers=2,
    num_heads=4,
    vocab_size=1000,
    feed_forward_proj="gated-gelu",  # T5 v1.1 (T5-XXL), as Flux and SD3 use
)
VAE16 = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=16,
    norm_num_groups=32,
    layers_per_block=1,
    use_quant_conv=False,
    use_post_quant_conv=False,
    scaling_factor=0.3611,  # FLUX.1 ae (diffusers' vae/config.json)
    shift_factor=0.1159,
)
# diffusers' FLUX.1-dev / FLUX.1-schnell scheduler/scheduler_config.json
FLOW_MATCH = {
    "dev": dict(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    ),
    "schnell": dict(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=False,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    ),
}


def clip_model(width: int = 32):
    """A tiny CLIP-L-like text model (``CLIP_L`` at ``width``) with seeded random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(7)
    return CLIPTextModel(CLIPTextConfig(**(CLIP_L | {"hidden_size": width}))).eval()


def t5_model():
    """A tiny T5 v1.1-like encoder with seeded random weights."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(8)
    return T5EncoderModel(T5Config(**T5)).eval()


def vae16_model():
    """A tiny 16-channel autoencoder without quant convs, as Flux's and SD3's."""
    from diffusers import AutoencoderKL

    torch.manual_seed(9)
    return AutoencoderKL(**VAE16).eval()


def clip_state(width: int = 32, prefix: bool = True) -> dict[str, torch.Tensor]:
    """A tiny CLIP text tower (``text_model.`` spelled as ComfyUI's files keep it)."""
    model = clip_model(width)
    state = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    return {("text_model." if prefix else "") + k: v for k, v in state.items()}


def t5_state() -> dict[str, torch.Tensor]:
    """A tiny T5 encoder (the shared embedding saved once)."""
    state = t5_model().state_dict()
    state.pop("encoder.embed_tokens.weight", None)
    return {k: v.clone() for k, v in state.items()}


def vae16_state() -> dict[str, torch.Tensor]:
    """The tiny 16-channel autoencoder's weights (diffusers names)."""
    return vae16_model().state_dict()


def vae16_ldm_state(prefix: str = "") -> dict[str, torch.Tensor]:
    """The tiny 16-channel autoencoder under LDM names, as BFL's ``ae.safetensors`` and
    ComfyUI's whole checkpoints (``vae.``) keep it."""
    from adapters import ldm_keys

    return ldm_keys.vae_to_ldm(vae16_state(), dict(VAE16), prefix)


def part_file(kind: str) -> Path:
    """A lone part: ``clip-l`` (ComfyUI spelling), ``clip-tf5`` (transformers 5 spelling),
    ``t5``, ``t5-fp8-scaled`` (ComfyUI's scaled fp8), ``vae16`` or ``vae16-ldm`` (BFL's
    ``ae.safetensors`` names)."""
    target = _path("part", kind)
    if target.is_file():
        return target
    if kind == "clip-l":
        state = clip_state(32)
    elif kind == "clip-tf5":
        state = clip_state(32, prefix=False)
    elif kind == "vae16":
        state = vae16_state()
    elif kind == "vae16-ldm":
        state = vae16_ldm_state()
    else:
        state = t5_state()
    if kind == "t5-fp8-scaled":
        scaled = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
        for key, value in state.items():
            if key.startswith("encoder.block.") and key.endswith(".weight") and value.dim() == 2:
                scale = value.abs().max() / 448
                scaled[key] = (value / scale).to(torch.float8_e4m3fn)
                scaled[key.removesuffix("weight") + "scale_weight"] = scale.reshape(())
            else:
                scaled[key] = value
        state = scaled
    return _save(state, target)


# Tiny SD3-family variants: SD3 Medium (no q/k norms), SD3.5 Medium (MMDiT-X: attn2 in the
# first block, RMSNorm q/k) and SD3.5 Large (RMSNorm q/k); three blocks, so that the first,
# a middle and the pre-only last block are all there.
SD3_VARIANTS = {
    "sd3": {},
    "sd35m": {"dual_attention_layers": (0,), "qk_norm": "rms_norm"},
    "sd35l": {"qk_norm": "rms_norm"},
}


def sd3_transformer(variant: str = "sd3", seed: int = 3):
    """A tiny SD3Transformer2DModel with random weights everywhere (diffusers zero-inits
    some layers)."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    config = dict(SD3, **SD3_VARIANTS[variant])
    if variant != "sd3":
        config["num_layers"] = 3
    model = SD3Transformer2DModel(**config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def sd3_file(
    layout: str = "diffusers", variant: str = "sd3", dtype: str = "F32", seed: int = 3
) -> Path:
    """A tiny SD3 transformer file: ``diffusers``, ``sai`` (the original layout, no prefix)
    or ``comfy`` (``model.diffusion_model.`` as in whole checkpoints)."""
    target = _path("sd3", layout, variant, dtype, seed)
    if target.is_file():
        return target
    state = sd3_transformer(variant, seed).state_dict()
    if layout != "diffusers":
        prefix = "model.diffusion_model." if layout == "comfy" else ""
        state = sd3_keys.sai_from_diffusers(state, prefix)
    return _save({k: v.to(TORCH_DTYPES[dtype]) for k, v in state.items()}, target)


SD3_PEFT_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "ff.net.0.proj",
    "ff_context.net.2",
    "norm1.linear",
    "norm1_context.linear",
    "norm_out.linear",
    "proj_out",
]


def sd3_peft_lora(variant: str = "sd35m", seed: int = 21) -> Path:
    """A diffusers PEFT SD3 LoRA (``transformer.transformer_blocks.0.attn.to_q.lora_A``,
    split q/k/v; ``attn2`` too on MMDiT-X) made by peft on the tiny transformer and saved by
    ``StableDiffusion3Pipeline.save_lora_weights``."""
    target = _path("sd3-peft", variant, seed)
    if target.is_file():
        return target
    from diffusers import StableDiffusion3Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    model = sd3_transformer(variant)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=RANK, lora_alpha=2 * RANK, target_modules=SD3_PEFT_TARGETS, init_lora_weights=False
    )
    model.add_adapter(config)
    out = target.parent / f"sd3-peft-{variant}"
    StableDiffusion3Pipeline.save_lora_weights(  # alpha 2r: the scale is in the metadata
        str(out),
        transformer_lora_layers=get_peft_model_state_dict(model),
        transformer_lora_adapter_metadata=model.peft_config["default"].to_dict(),
    )
    (out / "pytorch_lora_weights.safetensors").rename(target)
    return target


def sd3_kohya_lora(variant: str = "sd35m", seed: int = 22) -> Path:
    """A kohya sd-scripts SD3 LoRA (``lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down``,
    fused qkv, alpha 8 at rank 4) on every linear weight of the tiny SAI-layout transformer,
    plus a CLIP-L module (``lora_te1_``) that a transformer file has no target for."""
    target = _path("sd3-kohya", variant, seed)
    if target.is_file():
        return target
    shapes = {k: tuple(v.shape) for k, v in load_file(sd3_file("sai", variant)).items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(shapes.items()):
        if not key.endswith(".weight") or len(shape) != 2:
            continue
        name = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
        state[f"{name}.lora_down.weight"] = torch.randn(RANK, shape[1], generator=gen) * 0.1
        state[f"{name}.lora_up.weight"] = torch.randn(shape[0], RANK, generator=gen) * 0.1
        state[f"{name}.alpha"] = torch.tensor(8.0)
    te = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    state[f"{te}.lora_down.weight"] = torch.randn(RANK, 32, generator=gen)
    state[f"{te}.lora_up.weight"] = torch.randn(32, RANK, generator=gen)
    return _save(state, target)


FLUX_PEFT_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "proj_mlp",
    "proj_out",
    "ff.net.0.proj",
    "norm1.linear",
    "norm_out.linear",
]


def flux_peft_lora(seed: int = 11) -> Path:
    """An ai-toolkit/diffusers PEFT LoRA (``transformer.….lora_A.weight``, split q/k/v) made
    by peft on the tiny dev transformer and saved by ``FluxPipeline.save_lora_weights``."""
    target = _path("flux-peft", seed)
    if target.is_file():
        return target
    from diffusers import FluxPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    model = flux_transformer("dev")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=RANK, lora_alpha=RANK, target_modules=FLUX_PEFT_TARGETS, init_lora_weights=False
    )
    model.add_adapter(config)
    out = target.parent / "peft"
    FluxPipeline.save_lora_weights(
        str(out), transformer_lora_layers=get_peft_model_state_dict(model)
    )
    (out / "pytorch_lora_weights.safetensors").rename(target)
    return target


def flux_kohya_lora(seed: int = 12, linear1: bool = False) -> Path:
    """A kohya sd-scripts Flux LoRA (``lora_unet_double_blocks_0_img_attn_qkv.lora_down``,
    fused qkv, alpha 8 at rank 4) on every linear weight of the tiny BFL transformer; the
    single blocks' ``linear1`` only with ``linear1`` (diffusers reads it at full width only)."""
    target = _path("flux-kohya", seed, linear1)
    if target.is_file():
        return target
    shapes = {
        k: tuple(v.shape)
        for k, v in flux_keys.bfl_from_diffusers(flux_transformer("dev").state_dict()).items()
    }
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(shapes.items()):
        if not key.startswith(("double_blocks.", "single_blocks.")) or len(shape) != 2:
            continue
        if key.endswith("linear1.weight") and not linear1:
            continue
        name = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
        state[f"{name}.lora_down.weight"] = torch.randn(RANK, shape[1], generator=gen) * 0.1
        state[f"{name}.lora_up.weight"] = torch.randn(shape[0], RANK, generator=gen) * 0.1
        state[f"{name}.alpha"] = torch.tensor(8.0)
    return _save(state, target)


def flux_xlabs_lora(seed: int = 13) -> Path:
    """An XLabs Flux LoRA (``double_blocks.0.processor.qkv_lora1.down.weight``, no alpha)
    on the tiny dev transformer."""
    target = _path("flux-xlabs", seed)
    if target.is_file():
        return target
    hidden = FLUX["attention_head_dim"] * FLUX["num_attention_heads"]
    gen = torch.Generator().manual_seed(seed)
    state = {}

    def pair(name: str, rows: int) -> None:
        state[f"{name}.down.weight"] = torch.randn(RANK, hidden, generator=gen) * 0.1
        state[f"{name}.up.weight"] = torch.randn(rows, RANK, generator=gen) * 0.1

    for i in range(FLUX["num_layers"]):
        for stream in ("1", "2"):
            pair(f"double_blocks.{i}.processor.qkv_lora{stream}", 3 * hidden)
            pair(f"double_blocks.{i}.processor.proj_lora{stream}", hidden)
    return _save(state, target)


TOKENIZER_WORDS = "a an the of in on at with castle cat dog red blue photo painting tree sky house"


def t5_tokenizer_folder() -> Path:
    """A tiny T5 tokenizer saved as transformers saves one (``tokenizer.json`` and
    ``tokenizer_config.json``): a ``tokenizers`` Unigram model over letters, digits and a few
    words, ids 0/1/2 for pad, end and unknown as T5's."""
    import string

    folder = _path("t5-tokenizer").with_suffix("")
    if (folder / "tokenizer_config.json").is_file():
        return folder
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in string.ascii_lowercase + string.digits + ",.!?'-":
        pieces += [(f"\u2581{c}", -3.0), (c, -3.5)]
    pieces += [(f"\u2581{w}", -1.0) for w in TOKENIZER_WORDS.split()]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer = T5TokenizerFast(
        tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    tmp = folder.with_name(folder.name + ".tmp")
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def flux_pipeline(variant: str = "dev", transformer=None):
    """diffusers' ``FluxPipeline`` assembled directly from the tiny parts (the reference
    generation is compared with), with the scheduler config of the Flux repositories."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import T5TokenizerFast

    from hub.core.tokenizer import clip_tokenizer

    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLOW_MATCH[variant]),
        vae=vae16_model(),
        text_encoder=clip_model(),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5_model(),
        tokenizer_2=T5TokenizerFast.from_pretrained(t5_tokenizer_folder()),
        transformer=transformer if transformer is not None else flux_transformer(variant),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_folder(variant: str = "dev") -> Path:
    """The tiny Flux pipeline saved by diffusers (``model_index.json``, every component,
    ``tokenizer_2/``)."""
    folder = _path("flux-folder", variant).with_suffix("")
    if (folder / "model_index.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    flux_pipeline(variant).save_pretrained(tmp)
    tmp.rename(folder)
    return folder


# A tiny SD3.5-Large-like model that generates: 16-channel latents, RMSNorm q/k, CLIP-L and
# CLIP-G with projections (the narrower is CLIP-L) and a T5 wider than both CLIPs together,
# as SD3's prompt embedding pads the CLIPs' to the T5 width.
SD3_GEN = dict(
    SD3,
    in_channels=16,
    out_channels=16,
    joint_attention_dim=96,
    pooled_projection_dim=32,
    qk_norm="rms_norm",
)
SD3_CLIPS = {"clip-l": (32, "quick_gelu", 17), "clip-g": (48, "gelu", 18)}
SD3_T5 = dict(T5, d_model=96)
SD3_VAE = dict(VAE16, scaling_factor=1.5305, shift_factor=0.0609)  # SD3/SD3.5 vae config


def sd3_gen_transformer():
    """The tiny generating SD3.5 transformer, random weights everywhere."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(21)
    model = SD3Transformer2DModel(**SD3_GEN)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def sd3_clip(name: str):
    """A tiny CLIP text model with projection, as SD3 uses: ``clip-l`` or ``clip-g``."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    width, act, seed = SD3_CLIPS[name]
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        **(CLIP_L | {"hidden_size": width, "hidden_act": act}), projection_dim=16
    )
    return CLIPTextModelWithProjection(config).eval()


def sd3_t5():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(19)
    return T5EncoderModel(T5Config(**SD3_T5)).eval()


def _clip_file_state(model) -> dict[str, torch.Tensor]:
    """A CLIP text model's tensors as ComfyUI's and SAI's files keep them (``text_model.``)."""
    state = {k.removeprefix("text_model."): v for k, v in model.state_dict().items()}
    return {
        (k if k.startswith("text_projection") else f"text_model.{k}"): v
        for k, v in state.items()
        if not k.endswith("position_ids")
    }


def _t5_file_state(model) -> dict[str, torch.Tensor]:
    state = dict(model.state_dict())
    state.pop("encoder.embed_tokens.weight", None)
    return {k: v.clone() for k, v in state.items()}


def sd3_gen_file(layout: str = "sai") -> Path:
    """The tiny generating SD3.5 as a file: ``sai`` (the transformer alone, original layout),
    ``diffusers`` (the transformer alone) or ``whole`` (SAI's whole checkpoint:
    ``model.diffusion_model.``, ``text_encoders.clip_l/clip_g/t5xxl.transformer.``,
    ``first_stage_model.``)."""
    from adapters import ldm_keys
    from hub.core import sd3_keys

    target = _path("sd3-gen", layout)
    if target.is_file():
        return target
    state = sd3_gen_transformer().state_dict()
    if layout == "sai":
        state = sd3_keys.sai_from_diffusers(state)
    elif layout == "whole":
        state = sd3_keys.sai_from_diffusers(state, "model.diffusion_model.")
        for name, prefix in (("clip-l", "clip_l"), ("clip-g", "clip_g")):
            clip = _clip_file_state(sd3_clip(name))
            state |= {f"text_encoders.{prefix}.transformer.{k}": v for k, v in clip.items()}
        t5 = _t5_file_state(sd3_t5())
        state |= {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5.items()}
        state |= ldm_keys.vae_to_ldm(vae16_state(), dict(VAE16), "first_stage_model.")
    return _save(state, target)


def sd3_part_file(name: str) -> Path:
    """A separate SD3 text encoder: ``clip-l``, ``clip-g`` (with projections) or ``t5``."""
    target = _path("sd3-part", name)
    if target.is_file():
        return target
    if name == "t5":
        return _save(_t5_file_state(sd3_t5()), target)
    return _save(_clip_file_state(sd3_clip(name)), target)


def sd3_pipeline(transformer=None):
    """diffusers' ``StableDiffusion3Pipeline`` from the tiny parts (the reference), with the
    SD3 repositories' scheduler config (shift 3.0)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        StableDiffusion3Pipeline,
    )
    from transformers import T5TokenizerFast

    from hub.core.tokenizer import clip_tokenizer

    vae = AutoencoderKL(**SD3_VAE)
    vae.load_state_dict(vae16_state())
    pipe = StableDiffusion3Pipeline(
        transformer=transformer if transformer is not None else sd3_gen_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae.eval(),
        text_encoder=sd3_clip("clip-l"),
        tokenizer=clip_tokenizer(),
        text_encoder_2=sd3_clip("clip-g"),
        tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=sd3_t5(),
        tokenizer_3=T5TokenizerFast.from_pretrained(t5_tokenizer_folder()),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
