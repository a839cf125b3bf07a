"""Cached test files built from :mod:`hub.minimodels`, plus LoRAs made by peft and diffusers.

Everything is built by diffusers, transformers, peft and safetensors; single-file
checkpoints are checked against diffusers' own single-file loader in the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from adapters import ldm_keys
from hub import minimodels
from hub.minimodels import build_components, save_diffusers_configs, to_single_file

CACHE_ROOT = Path(os.environ.get("HUB_TEST_CACHE", Path(__file__).parent.parent / ".cache"))


def builder_key(*parts: object) -> str:
    """Cache key: the builders' source plus the arguments."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for module in (ldm_keys, minimodels):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(json.dumps(parts, default=str).encode())
    return digest.hexdigest()[:16]


def mini_checkpoint(name: str, dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """Path of the cached single-file checkpoint ``<cache>/<key>/<name>.safetensors``, with a
    ``config/`` folder of diffusers configs beside it."""
    folder = CACHE_ROOT / "mini" / builder_key("checkpoint", name, str(dtype), seed)
    target = folder / f"mini-{name}.safetensors"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    parts = build_components(name, seed)
    state = {k: v.to(dtype) for k, v in to_single_file(name, parts).items()}
    save_diffusers_configs(parts, folder / "config")
    tmp = target.with_suffix(".tmp")
    save_file(state, tmp)
    tmp.rename(target)
    return target


def _cached(kind: str, *args: object) -> tuple[Path, bool]:
    folder = CACHE_ROOT / "mini" / builder_key(kind, *args)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{kind}-{'-'.join(map(str, args))}.safetensors"
    return target, target.is_file()


def _save(
    state: dict[str, torch.Tensor], target: Path, metadata: dict[str, str] | None = None
) -> Path:
    tmp = target.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata)
    tmp.rename(target)
    return target


UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


# Per-module entries (peft regexes, matched at the end of a module name) for the metadata
# builds below: one rank and one alpha entry per component, hitting some modules only.
UNET_PATTERNS = {
    "rank_pattern": {"attn2.to_k": 2},
    "alpha_pattern": {r"down_blocks\.0\..*attn1\.to_v": 3, "attn2.to_k": 1},
}
TEXT_PATTERNS = {
    "rank_pattern": {"self_attn.q_proj": 2},
    "alpha_pattern": {"layers.0.self_attn.out_proj": 5},
}


def peft_lora(
    name: str,
    rank: int = 4,
    alpha: int = 8,
    seed: int = 1,
    metadata: bool = False,
    variant: str = "lora",
) -> Path:
    """A LoRA trained-shape file made by peft on the mini model and saved by diffusers'
    ``save_lora_weights`` (PEFT keys ``unet.…lora_A.weight``), text encoders included. With
    ``metadata`` the adapters also carry :data:`UNET_PATTERNS`/:data:`TEXT_PATTERNS` and the
    file their configs as ``lora_adapter_metadata``, as diffusers' training scripts save it;
    ``variant`` "rslora" sets ``use_rslora``, "dora" ``use_dora`` (magnitudes moved off their
    initial norms, as training does)."""
    extra = (["meta"] if metadata else []) + ([variant] if variant != "lora" else [])
    target, ok = _cached("peft", name, rank, alpha, seed, *extra)
    if ok:
        return target
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    parts = build_components(name, seed=0)
    torch.manual_seed(seed)
    layers, configs = {}, {}
    for key, targets, patterns in (
        ("unet", UNET_TARGETS, UNET_PATTERNS),
        ("text_encoder", TEXT_TARGETS, TEXT_PATTERNS),
        ("text_encoder_2", TEXT_TARGETS, TEXT_PATTERNS),
    ):
        if key not in parts:
            continue
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=targets,
            init_lora_weights=False,
            use_rslora=variant == "rslora",
            use_dora=variant == "dora",
            **(patterns if metadata else {}),
        )
        parts[key].add_adapter(config)
        with torch.no_grad():
            for param_name, param in parts[key].named_parameters():
                if "lora_magnitude_vector" in param_name:
                    param.mul_(1 + 0.1 * torch.randn_like(param))
        layers[f"{key}_lora_layers"] = get_peft_model_state_dict(parts[key])
        configs[f"{key}_lora_adapter_metadata"] = parts[key].peft_config["default"].to_dict()
    pipeline = StableDiffusionXLPipeline if name == "sdxl" else StableDiffusionPipeline
    out = target.parent / "peft"
    pipeline.save_lora_weights(
        str(out), **layers, **(configs if metadata else {}), safe_serialization=True
    )
    (out / "pytorch_lora_weights.safetensors").rename(target)
    return target


def kohya_lora(name: str, rank: int = 4, alpha: int = 8, seed: int = 1) -> Path:
    """The peft LoRA above turned into kohya keys by diffusers' ``convert_state_dict_to_kohya``."""
    target, ok = _cached("kohya", name, rank, alpha, seed)
    if ok:
        return target
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file

    peft_sd = load_file(peft_lora(name, rank, alpha, seed))
    kohya = convert_state_dict_to_kohya(peft_sd)
    return _save(kohya, target, {"ss_network_module": "networks.lora", "ss_network_dim": str(rank)})


def lycoris_lora(name: str, algo: str, rank: int = 4, seed: int = 2) -> Path:
    """A LyCORIS-style file of ``algo`` on the mini model (see hub.minimodels)."""
    target, ok = _cached("lycoris", name, algo, rank, seed)
    if ok:
        return target
    state, metadata = minimodels.lycoris_state(name, algo, rank, seed)
    return _save(state, target, metadata)


def embedding(name: str, vectors: int = 2, seed: int = 3) -> Path:
    target, ok = _cached("embedding", name, vectors, seed)
    return target if ok else _save(minimodels.embedding_state(name, vectors, seed), target)


def vae_file(seed: int = 4) -> Path:
    target, ok = _cached("vae", seed)
    return target if ok else _save(minimodels.vae_state(seed), target)


def random_file(seed: int = 5) -> Path:
    """A valid safetensors file whose tensors mean nothing."""
    target, ok = _cached("random", seed)
    if ok:
        return target
    g = torch.Generator().manual_seed(seed)
    return _save(
        {
            "alpha_layer.kernel": torch.randn(7, 3, generator=g),
            "beta.values": torch.randn(5, generator=g),
            "gamma": torch.randn(2, 2, 2, generator=g),
        },
        target,
    )


def hypernetwork(name: str, seed: int = 6) -> Path:
    """An A1111 hypernetwork ``.pt`` (a real pickle, as A1111 writes it)."""
    folder = CACHE_ROOT / "mini" / builder_key("hypernetwork", name, seed)
    target = folder / f"hypernetwork-{name}.pt"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(minimodels.hypernetwork_object(name, seed), target.with_suffix(".tmp"))
        target.with_suffix(".tmp").rename(target)
    return target
