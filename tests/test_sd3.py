"""SD3/SD3.5: the SAI <-> diffusers key map (checked against diffusers' converter at full
size and on tiny models), identification of both layouts, and baking diffusers PEFT and
kohya SD3 LoRAs into either layout, equal to diffusers' load_lora_weights + fuse_lora (PEFT)
and to the LoRA formula (kohya)."""

from __future__ import annotations

import flux_models as fm
import pytest
import torch
from safetensors.torch import load_file

from hub.core import sd3_keys
from hub.register import identify_path

# Full-size configs (diffusers' model_index/transformer config.json of each release).
FULL = {
    "sd3-medium": dict(
        num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=192
    ),
    "sd3.5-medium": dict(
        num_layers=24,
        num_attention_heads=24,
        caption_projection_dim=1536,
        pos_embed_max_size=384,
        dual_attention_layers=tuple(range(13)),
        qk_norm="rms_norm",
    ),
    "sd3.5-large": dict(
        num_layers=38,
        num_attention_heads=38,
        caption_projection_dim=2432,
        pos_embed_max_size=192,
        qk_norm="rms_norm",
    ),
}


def _converted(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import (
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    return convert_sd3_transformer_checkpoint_to_diffusers(dict(original))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize("release", sorted(FULL))
def test_sai_map_matches_diffusers_converter_at_full_size(release):
    """Every tensor name of the full-size transformer, one distinct value per row (the map
    only moves rows): ours to SAI, diffusers' back, every tensor equal; and ours back."""
    from diffusers import SD3Transformer2DModel

    with torch.device("meta"):
        model = SD3Transformer2DModel(
            sample_size=128,
            in_channels=16,
            out_channels=16,
            attention_head_dim=64,
            joint_attention_dim=4096,
            pooled_projection_dim=2048,
            **FULL[release],
        )
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn((v.shape[0], 1) if v.dim() > 1 else tuple(v.shape), generator=gen)
        for k, v in model.state_dict().items()
    }
    state["pos_embed.pos_embed"] = torch.randn(1, 3, 1, generator=gen)  # a stand-in: no rows
    sai = sd3_keys.sai_from_diffusers(state, "model.diffusion_model.")
    depth = FULL[release]["num_layers"]
    assert f"model.diffusion_model.joint_blocks.{depth - 1}.x_block.attn.qkv.weight" in sai
    assert ("model.diffusion_model.joint_blocks.12.x_block.attn2.qkv.weight" in sai) == (
        release == "sd3.5-medium"
    )
    assert _equal(_converted(sai), state)
    assert _equal(sd3_keys.diffusers_from_sai(sai), state)
    geo = sd3_keys.geometry({k: tuple(v.shape) for k, v in sai.items()})
    assert (geo.hidden, geo.depth) == (64 * FULL[release]["num_attention_heads"], depth)


@pytest.mark.parametrize("variant", sorted(fm.SD3_VARIANTS))
def test_tiny_round_trip_through_diffusers_converter(variant):
    state = fm.sd3_transformer(variant).state_dict()
    sai = sd3_keys.sai_from_diffusers(state)
    assert sai["joint_blocks.0.x_block.attn.qkv.weight"].shape == (3 * 16, 16)
    last = len({k.split(".")[1] for k in sai if k.startswith("joint_blocks.")}) - 1
    assert f"joint_blocks.{last}.context_block.attn.proj.weight" not in sai  # pre-only
    assert _equal(_converted(sai), state)
    assert _equal(sd3_keys.diffusers_from_sai(sai), state)


@pytest.mark.parametrize(
    ("layout", "variant", "size"),
    [
        ("sai", "sd35m", "3.5-medium"),
        ("comfy", "sd35l", "medium"),
        ("diffusers", "sd35m", "3.5-medium"),
    ],
)
def test_identification_of_both_layouts(ctx, layout, variant, size):
    best = identify_path(ctx, fm.sd3_file(layout, variant)).best
    expected_layout = "diffusers" if layout == "diffusers" else "sai"
    assert (str(best.kind), str(best.base), best.layout, best.variant) == (
        "checkpoint",
        "sd3",
        expected_layout,
        size,
    ), best.reason


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.float() - b.float()).abs().max() <= 1e-5 * max(1e-12, b.float().abs().max()))


def _fused_reference(variant: str, lora, scale: float) -> dict[str, torch.Tensor]:
    """diffusers: the tiny transformer with the LoRA loaded and fused at ``scale`` through
    StableDiffusion3Pipeline's loader."""
    from diffusers import StableDiffusion3Pipeline

    model = fm.sd3_transformer(variant)
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    pipe = StableDiffusion3Pipeline(
        **dict.fromkeys(parts), text_encoder_3=None, tokenizer_3=None, transformer=model
    )
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bake(hub, model, lora, strength: float) -> dict:
    hub("import", str(model), "--name", "sd3")
    hub("import", str(lora), "--name", "style")
    out = hub("merge", "sd3", "--lora", f"style:{strength}", "--name", "baked", "--json").json()
    assert (out["kind"], out["base"]) == ("checkpoint", "sd3")
    return out


@pytest.mark.parametrize("layout", ["sai", "comfy", "diffusers"])
@pytest.mark.parametrize("variant", ["sd35m", "sd35l"])
def test_peft_bake_equals_diffusers_fuse_lora(hub, layout, variant):
    """Split q/k/v (PEFT) onto SAI's fused qkv as row slices, swapped AdaLN halves in the
    last block and the final layer: every weight equals diffusers' fused model."""
    lora = fm.sd3_peft_lora(variant)
    out = _bake(hub, fm.sd3_file(layout, variant), lora, 0.7)
    baked = load_file(out["path"])
    if layout != "diffusers":
        baked = _converted(baked)
    expected = _fused_reference(variant, lora, 0.7)
    original = fm.sd3_transformer(variant).state_dict()
    changed = [k for k in expected if not torch.equal(expected[k], original[k])]
    assert len(changed) >= 30
    assert set(baked) == set(expected)
    for key in expected:
        assert _close(baked[key], expected[key]), key


@pytest.mark.parametrize("layout", ["sai", "diffusers"])
def test_kohya_bake_equals_the_formula(hub, layout):
    """Fused qkv (kohya) onto diffusers' split q/k/v as row slices; a CLIP-L module has no
    target in a transformer file and is reported, not applied."""
    lora = load_file(fm.sd3_kohya_lora("sd35m"))
    sai = load_file(fm.sd3_file("sai", "sd35m"))
    expected = dict(sai)
    for key in sai:
        name = "lora_unet_" + key.removesuffix(".weight").replace(".", "_")
        if f"{name}.lora_up.weight" in lora:
            up, down = lora[f"{name}.lora_up.weight"], lora[f"{name}.lora_down.weight"]
            expected[key] = sai[key] + 0.5 * 8 / fm.RANK * up @ down
    changed = [k for k in sai if not torch.equal(expected[k], sai[k])]
    assert "joint_blocks.0.x_block.attn2.qkv.weight" in changed and len(changed) >= 30
    out = _bake(hub, fm.sd3_file(layout, "sd35m"), fm.sd3_kohya_lora("sd35m"), 0.5)
    baked = load_file(out["path"])
    if layout == "diffusers":
        expected = _converted(expected)
    assert set(baked) == set(expected)
    for key in expected:
        assert _close(baked[key], expected[key]), key
    shown = hub("show", "baked", "--json").json()
    assert shown["base"] == "sd3"


def test_sd3_loras_identified_and_fit_only_sd3_models(hub):
    hub("import", str(fm.sd3_file("sai", "sd35m")), "--name", "sd35m")
    hub("import", str(fm.flux_file("dev", "bfl")), "--name", "flux")
    for name, path in (
        ("sd3-kohya", fm.sd3_kohya_lora("sd35m")),
        ("sd3-peft", fm.sd3_peft_lora("sd35m")),
        ("flux-kohya", fm.flux_kohya_lora()),
    ):
        hub("import", str(path), "--name", name)
    shown = hub("show", "sd3-peft", "--json").json()
    assert (shown["kind"], shown["base"]) == ("lora", "sd3")
    fits = hub("fits", "sd35m", "--json").json()
    assert sorted(a["name"] for a in fits.get("lora", [])) == ["sd3-kohya", "sd3-peft"]
    refused = hub("merge", "flux", "--lora", "sd3-kohya", "--name", "x", ok=False)
    assert "does not fit flux" in refused.err and "Traceback" not in refused.err
