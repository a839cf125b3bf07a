"""Identification from the safetensors header, on files built by diffusers/peft/safetensors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hub.register import identify_path

EXPECTED = {
    # name: (kind, base, algo, variant, layout)
    "mini-sd1": ("checkpoint", "sd1", None, None, "ldm"),
    "mini-sdxl": ("checkpoint", "sdxl", None, None, "ldm"),
    "mini-sd2": ("checkpoint", "sd2", None, None, "ldm"),
    "mini-sd1-inpaint": ("checkpoint", "sd1", None, "inpaint", "ldm"),
    "kohya-sd1": ("lora", "sd1", "lora", None, "kohya"),
    "kohya-sdxl": ("lora", "sdxl", "lora", None, "kohya"),
    "peft-sd1": ("lora", "sd1", "lora", None, "peft"),
    "peft-sdxl": ("lora", "sdxl", "lora", None, "peft"),
    "locon-sd1": ("lora", "sd1", "locon", None, "kohya"),
    "loha-sd1": ("lora", "sd1", "loha", None, "kohya"),
    "lokr-sd1": ("lora", "sd1", "lokr", None, "kohya"),
    "full-sd1": ("lora", "sd1", "full", None, "kohya"),
    "ia3-sd1": ("lora", "sd1", "ia3", None, "kohya"),
    "dora-sd1": ("lora", "sd1", "dora", None, "kohya"),
    "emb-sd1": ("embedding", "sd1", None, None, "a1111"),
    "emb-sd2": ("embedding", "sd2", None, None, "a1111"),
    "emb-sdxl": ("embedding", "sdxl", None, None, "sdxl-pair"),
    "vae": ("vae", "unknown", None, None, "ldm"),
    "random": ("unknown", "unknown", None, None, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_identification(ctx, models, name):
    ident = identify_path(ctx, models[name])
    best = ident.best
    got = (str(best.kind), str(best.base), best.algo, best.variant, best.layout)
    assert got == EXPECTED[name], best.reason
    # every probe ran and said why
    assert {v.probe for v in ident.verdicts} >= {"checkpoint", "lora", "embedding", "vae"}
    assert all(v.reason for v in ident.verdicts)


def test_sd2_shaped_keys_are_real_sd2_keys(models):
    """The 1024-wide mini model carries SD2's OpenCLIP text keys and linear proj_in."""
    keys = load_file(models["mini-sd2"]).keys()
    assert any(
        k.startswith("cond_stage_model.model.transformer.resblocks.0.attn.in_proj") for k in keys
    )
    state = load_file(models["mini-sd2"])
    proj = [k for k in keys if k.endswith("proj_in.weight")]
    assert proj and all(state[k].dim() == 2 for k in proj)


@pytest.mark.parametrize("name", ["sd1", "sdxl"])
def test_single_file_layout_matches_diffusers(name, models):
    """Our LDM writer is checked by diffusers' own single-file loaders, tensor for tensor."""
    import minimodels as mm
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )

    path = models[f"mini-{name}"]
    config = str(path.parent / "config")
    parts = mm.build_components(name)
    for cls, key in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
        loaded = cls.from_single_file(
            str(path), config=config, subfolder=key, torch_dtype=torch.float16
        ).state_dict()
        ref = parts[key].state_dict()
        assert loaded.keys() == ref.keys()
        assert all(torch.equal(loaded[k], ref[k].half()) for k in ref), key
    single = load_file(path)
    prefix = (
        "cond_stage_model.transformer."
        if name == "sd1"
        else ("conditioner.embedders.0.transformer.")
    )
    clip = convert_ldm_clip_checkpoint(single, remove_prefix=prefix)
    ref = {
        ("text_model." + k if not k.startswith("text_model.") else k): v
        for k, v in parts["text_encoder"].state_dict().items()
    }
    assert clip.keys() == ref.keys()
    assert all(torch.equal(clip[k], ref[k].half()) for k in ref)
    if name == "sdxl":
        g = convert_open_clip_checkpoint(
            parts["text_encoder_2"], single, prefix="conditioner.embedders.1.model."
        )
        ref = parts["text_encoder_2"].state_dict()
        assert g.keys() == ref.keys()
        assert all(torch.equal(g[k], ref[k].half()) for k in ref)


def test_show_why_lists_every_probe(hub, models):
    hub("import", models["loha-sd1"])
    out = hub("show", "lora:lycoris-sd1-loha-4-2", "--why", "--json").json()
    assert out["algo"] == "loha"
    probes = {v["probe"]: v for v in out["why"]}
    assert probes["lora"]["matched"] and "loha" in probes["lora"]["reason"]
    assert not probes["checkpoint"]["matched"] and probes["checkpoint"]["reason"]


def test_kind_and_base_overrides_stick(hub, tmp_path, models):
    hub("import", models["random"], "--kind", "embedding", "--base", "sd2", "--name", "odd")
    art = hub("show", "odd", "--json").json()
    assert (art["kind"], art["base"]) == ("embedding", "sd2")
    assert sorted(art["overrides"]) == ["base", "kind"]
    hub("scan", hub.home / "models")  # a later scan of the store keeps the override
    art = hub("show", "odd", "--json").json()
    assert (art["kind"], art["base"]) == ("embedding", "sd2")


def test_show_why_on_an_unregistered_file(hub, models):
    out = hub("show", models["lokr-sd1"], "--why", "--json").json()
    assert (out["kind"], out["algo"], out["base"]) == ("lora", "lokr", "sd1")
    assert {v["probe"] for v in out["why"]} >= {"checkpoint", "lora", "embedding"}
    assert hub("list", "--json").json() == []
