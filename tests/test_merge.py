"""Baking LoRAs into checkpoints, checked against diffusers' own LoRA loading and fusing."""

from __future__ import annotations

import minimodels as tm
import pytest
import torch
from safetensors.torch import load_file

from adapters import ldm_keys
from hub import minimodels as mm


def _diffusers_fused(name: str, lora_path, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """diffusers' load_lora_weights + fuse_lora on the same mini model, in LDM names."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = mm.build_components(name)
    kwargs = dict(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=None,
        unet=parts["unet"],
        scheduler=EulerDiscreteScheduler(),
    )
    if name == "sdxl":
        pipe = StableDiffusionXLPipeline(
            **kwargs, text_encoder_2=parts["text_encoder_2"], tokenizer_2=None
        )
    else:
        pipe = StableDiffusionPipeline(
            **kwargs, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.load_lora_weights(str(lora_path))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    state = ldm_keys.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))
    state |= ldm_keys.clip_to_ldm(pipe.text_encoder.state_dict(), mm.TEXT_PREFIXES[name][0])
    if name == "sdxl":
        state |= ldm_keys.openclip_to_ldm(
            pipe.text_encoder_2.state_dict(), mm.TEXT_PREFIXES[name][1]
        )
    return state


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.float() - b.float()).abs().max() <= 1e-5 * max(1e-12, b.float().abs().max())


@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_bake_equals_diffusers_fuse_lora_sd1(hub, layout):
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    lora = tm.kohya_lora("sd1") if layout == "kohya" else tm.peft_lora("sd1")
    hub("import", ckpt, "--name", "base")
    hub("import", lora, "--name", "style")
    out = hub("merge", "base", "--lora", "style:0.8", "--name", "baked", "--json").json()
    assert (out["kind"], out["base"], out["source"]["name"]) == ("checkpoint", "sd1", "merge")
    baked = load_file(out["path"])
    original = load_file(ckpt)
    expected = _diffusers_fused("sd1", lora, scale=0.8)
    changed = 0
    for key, ref in expected.items():
        assert _close(baked[key], ref), key
        changed += not torch.equal(baked[key], original[key])
    assert changed >= 64  # UNet attention and text-encoder projections moved
    assert any(
        k.startswith("cond_stage_model.") and not torch.equal(baked[k], original[k])
        for k in expected
    )


def test_unet_only_and_recipe_metadata(hub):
    import json

    from safetensors import safe_open

    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    hub("import", ckpt, "--name", "base")
    hub("import", tm.kohya_lora("sd1"), "--name", "a")
    hub("import", tm.lycoris_lora("sd1", "loha"), "--name", "b")
    out = hub(
        "merge",
        "base",
        "--lora",
        "a:0.5",
        "--lora",
        "lora:b:1:0.7",
        "--unet-only",
        "--name",
        "mix",
        "--json",
    ).json()
    baked, original = load_file(out["path"]), load_file(ckpt)
    te = [k for k in original if k.startswith("cond_stage_model.")]
    assert all(torch.equal(baked[k], original[k]) for k in te)
    with safe_open(out["path"], "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["type"] == "sd-hub" and [x["name"] for x in recipe["loras"]] == ["a", "b"]
    assert recipe["loras"][1] == {
        "name": "b",
        "sha256": recipe["loras"][1]["sha256"],
        "te": 1.0,
        "unet": 0.7,
    }
    models = json.loads(meta["sd_merge_models"])
    assert len(models) == 3
    lineage = hub("show", "mix", "--json").json()["lineage"]
    assert sorted(p["relation"] for p in lineage) == ["merge-base", "merge-lora", "merge-lora"]


def test_sdxl_lora_on_sd1_is_refused(hub):
    hub("import", tm.mini_checkpoint("sd1"), "--name", "base")
    hub("import", tm.kohya_lora("sdxl"), "--name", "xl")
    result = hub("merge", "base", "--lora", "xl", "--name", "bad", ok=False)
    assert result.code != 0 and "sdxl LoRA" in result.err and "do not fit" in result.err
    assert "Traceback" not in result.err
    assert len(hub("list", "--json").json()) == 2
