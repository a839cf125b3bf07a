"""Flux.1 and SD3: the BFL <-> diffusers key map (checked against diffusers' converter at full
size), identification of transformers, parts and LoRAs, fp8/bf16 files, and baking LoRAs
(kohya, PEFT, XLabs) equal to diffusers' load_lora_weights + fuse_lora."""

from __future__ import annotations

import hashlib

import flux_models as fm
import pytest
import torch
from safetensors.torch import load_file

from hub.core import flux_keys
from hub.register import identify_path


def _full_size_rows() -> dict[str, torch.Tensor]:
    """Every tensor name of a full-size Flux.1-dev transformer (diffusers layout), each as
    one distinct value per row: the map only moves rows, so this checks it exactly."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
    gen = torch.Generator().manual_seed(0)
    return {
        k: torch.randn((v.shape[0], 1) if v.dim() > 1 else tuple(v.shape), generator=gen)
        for k, v in model.state_dict().items()
    }


def test_bfl_map_matches_diffusers_converter_at_full_size():
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    state = _full_size_rows()
    bfl = flux_keys.bfl_from_diffusers(state)
    assert "double_blocks.18.img_attn.qkv.weight" in bfl and "single_blocks.37.linear1.bias" in bfl
    back = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    ours = flux_keys.diffusers_from_bfl(bfl)
    assert all(torch.equal(ours[k], state[k]) for k in state)
    geo = flux_keys.geometry({k: tuple(v.shape) for k, v in bfl.items()})
    assert (geo.hidden, geo.mlp, geo.double, geo.single, geo.guidance) == (
        3072,
        12288,
        19,
        38,
        True,
    )


def test_tiny_bfl_round_trip():
    state = fm.flux_transformer("dev").state_dict()
    bfl = flux_keys.bfl_from_diffusers(state)
    assert bfl["double_blocks.0.img_attn.qkv.weight"].shape[0] == 3 * 16
    back = flux_keys.diffusers_from_bfl(bfl)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


IDENTIFIED = {
    # file: (kind, base, variant, layout, reason fragment)
    "dev-bfl": ("checkpoint", "flux", "dev", "bfl", "transformer only"),
    "schnell-bfl": ("checkpoint", "flux", "schnell", "bfl", "no guidance embedder"),
    "fill-bfl": ("checkpoint", "flux", "fill-dev", "bfl", "image input 384 for 64"),
    "depth-bfl": ("checkpoint", "flux", "depth-or-canny-dev", "bfl", "input 128"),
    "dev-diffusers": ("checkpoint", "flux", "dev", "diffusers", "transformer_blocks"),
    "dev-comfy": ("checkpoint", "flux", "dev", "bfl", "text encoders clip_l, t5xxl and a VAE"),
    "dev-bfl-bf16": ("checkpoint", "flux", "dev", "bfl", "double_blocks"),
    "dev-bfl-fp8": ("checkpoint", "flux", "dev", "bfl", "double_blocks"),
    "dev-bfl-fp8e5": ("checkpoint", "flux", "dev", "bfl", "double_blocks"),
    "sd3-diffusers": ("checkpoint", "sd3", "medium", "diffusers", "2 joint blocks of width 16"),
    "clip-l": ("text_encoder", "unknown", "clip-32", "transformers", "2 layers of width 32"),
    "clip-tf5": ("text_encoder", "unknown", "clip-32", "transformers", "CLIP"),
    "t5": ("text_encoder", "unknown", "t5-32", "transformers", "T5"),
    "t5-fp8-scaled": ("text_encoder", "unknown", "t5-32", "transformers", "scale_weight"),
    "vae16": ("vae", "unknown", "16-channel", "diffusers", "16 latent channels"),
    "lora-peft": ("lora", "flux", None, "peft", "single_transformer_blocks"),
    "lora-kohya": ("lora", "flux", None, "kohya", "lora_unet_double_blocks_0"),
    "lora-xlabs": ("lora", "flux", None, "xlabs", "processor"),
}


def _file(name: str):
    dtype = {"bf16": "BF16", "fp8": "F8_E4M3", "fp8e5": "F8_E5M2"}
    if name.startswith("lora-"):
        return {
            "lora-peft": fm.flux_peft_lora,
            "lora-kohya": fm.flux_kohya_lora,
            "lora-xlabs": fm.flux_xlabs_lora,
        }[name]()
    if name == "sd3-diffusers":
        return fm.sd3_file()
    if name in ("clip-l", "clip-tf5", "t5", "t5-fp8-scaled", "vae16"):
        return fm.part_file(name)
    variant, layout, *rest = name.split("-")
    return fm.flux_file(variant, layout, dtype[rest[0]] if rest else "F32")


@pytest.mark.parametrize("name", sorted(IDENTIFIED))
def test_identification(ctx, name):
    best = identify_path(ctx, _file(name)).best
    kind, base, variant, layout, fragment = IDENTIFIED[name]
    assert (str(best.kind), str(best.base), best.variant, best.layout) == (
        kind,
        base,
        variant,
        layout,
    ), best.reason
    assert fragment in best.reason


def test_fp8_and_bf16_files_read_and_hash(hub):
    from hub.core.safetensors_io import SafetensorsReader

    f32 = load_file(fm.flux_file("dev", "bfl"))
    for dtype, torch_dtype in (("F8_E4M3", torch.float8_e4m3fn), ("BF16", torch.bfloat16)):
        path = fm.flux_file("dev", "bfl", dtype)
        with SafetensorsReader(path) as reader:
            key = "double_blocks.0.img_attn.qkv.weight"
            assert reader.spec(key).dtype == dtype
            assert torch.equal(
                reader.tensor(key).view(torch.uint8), f32[key].to(torch_dtype).view(torch.uint8)
            )
        [out] = hub("import", str(path), "--name", f"m-{dtype}", "--json").json()
        assert out["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (out["base"], out["kind"]) == ("flux", "checkpoint")


def _fused_reference(lora, scale: float) -> dict[str, torch.Tensor]:
    """diffusers: the tiny dev transformer with the LoRA loaded and fused at ``scale``."""
    from diffusers import FluxPipeline

    model = fm.flux_transformer("dev")
    pipe = FluxPipeline(
        scheduler=None,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=model,
    )
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.float() - b.float()).abs().max() <= 1e-5 * max(1e-12, b.float().abs().max()))


LORAS = {"peft": fm.flux_peft_lora, "kohya": fm.flux_kohya_lora, "xlabs": fm.flux_xlabs_lora}


@pytest.mark.parametrize("layout", ["bfl", "diffusers"])
@pytest.mark.parametrize("kind", sorted(LORAS))
def test_bake_equals_diffusers_fuse_lora(hub, kind, layout):
    """Split q/k/v (PEFT) onto BFL's fused qkv and fused (kohya, XLabs) onto diffusers'
    split q/k/v land as row slices; every weight equals diffusers' fused model."""
    lora = LORAS[kind]()
    model = fm.flux_file("dev", layout)
    hub("import", str(model), "--name", "flux")
    hub("import", str(lora), "--name", "style")
    out = hub("merge", "flux", "--lora", "style:0.7", "--name", "baked", "--json").json()
    assert (out["kind"], out["base"]) == ("checkpoint", "flux")
    baked = load_file(out["path"])
    if layout == "bfl":
        baked = flux_keys.diffusers_from_bfl(baked)
    expected = _fused_reference(lora, 0.7)
    original = fm.flux_transformer("dev").state_dict()
    assert set(baked) == set(expected)
    changed = [k for k in expected if not torch.equal(expected[k], original[k])]
    assert len(changed) >= 8
    for key in expected:
        assert _close(baked[key], expected[key]), key


def test_kohya_linear1_by_formula(hub):
    """diffusers reads a kohya ``linear1`` LoRA only at full width: check by the formula."""
    lora = load_file(fm.flux_kohya_lora(linear1=True))
    model = fm.flux_file("dev", "bfl")
    hub("import", str(model), "--name", "flux")
    hub("import", str(fm.flux_kohya_lora(linear1=True)), "--name", "l1")
    out = hub("merge", "flux", "--lora", "l1:0.5", "--name", "baked", "--json").json()
    baked, original = load_file(out["path"]), load_file(model)
    name = "lora_unet_single_blocks_1_linear1"
    up, down = lora[f"{name}.lora_up.weight"], lora[f"{name}.lora_down.weight"]
    expected = original["single_blocks.1.linear1.weight"] + 0.5 * 8 / 4 * up @ down
    assert _close(baked["single_blocks.1.linear1.weight"], expected)


def test_bake_keeps_fp8_dtype_and_rounds_like_torch(hub):
    model = fm.flux_file("dev", "bfl", "F8_E4M3")
    lora = load_file(fm.flux_kohya_lora())
    hub("import", str(model), "--name", "flux8")
    hub("import", str(fm.flux_kohya_lora()), "--name", "style")
    out = hub("merge", "flux8", "--lora", "style", "--name", "baked8", "--json").json()
    baked, original = load_file(out["path"]), load_file(model)
    key, name = "double_blocks.0.img_mlp.0.weight", "lora_unet_double_blocks_0_img_mlp_0"
    assert baked[key].dtype == torch.float8_e4m3fn
    delta = lora[f"{name}.lora_up.weight"] @ lora[f"{name}.lora_down.weight"] * 2
    expected = (original[key].float() + delta).to(torch.float8_e4m3fn)
    assert torch.equal(baked[key].view(torch.uint8), expected.view(torch.uint8))


def test_bake_with_dtype_rounds_once_from_float32(hub):
    """``--dtype fp8`` on a bf16 file: patched weights go float32 -> fp8 in one rounding,
    the rest are cast as ``hub convert --dtype`` casts them."""
    model = fm.flux_file("dev", "bfl", "BF16")
    lora = load_file(fm.flux_kohya_lora())
    hub("import", str(model), "--name", "flux16")
    hub("import", str(fm.flux_kohya_lora()), "--name", "style")
    out = hub(
        "merge", "flux16", "--lora", "style", "--dtype", "fp8", "--name", "b8", "--json"
    ).json()
    baked, original = load_file(out["path"]), load_file(model)
    assert {v.dtype for v in baked.values()} == {torch.float8_e4m3fn}
    key, name = "double_blocks.0.img_mlp.0.weight", "lora_unet_double_blocks_0_img_mlp_0"
    delta = lora[f"{name}.lora_up.weight"] @ lora[f"{name}.lora_down.weight"] * 2
    expected = (original[key].float() + delta).to(torch.float8_e4m3fn)
    assert torch.equal(baked[key].view(torch.uint8), expected.view(torch.uint8))
    plain = original["img_in.weight"].to(torch.float8_e4m3fn)
    assert torch.equal(baked["img_in.weight"].view(torch.uint8), plain.view(torch.uint8))


@pytest.mark.parametrize(
    ("source", "dtype", "expected"),
    [
        ("BF16", "fp8", torch.float8_e4m3fn),
        ("F32", "fp8_e5m2", torch.float8_e5m2),
        ("F8_E4M3", "bf16", torch.bfloat16),
        ("F32", "fp16", torch.float16),
    ],
)
def test_convert_dtype_streams_and_rounds_like_torch(hub, source, dtype, expected):
    path = fm.flux_file("dev", "bfl", source)
    hub("import", str(path), "--name", "flux")
    out = hub("convert", "flux", "--dtype", dtype, "--json").json()
    got, original = load_file(out["path"]), load_file(path)
    assert set(got) == set(original)
    for key, value in original.items():
        want = value.to(expected)
        assert got[key].dtype == expected and torch.equal(
            got[key].view(torch.uint8), want.view(torch.uint8)
        ), key
    assert (out["base"], out["variant"]) == ("flux", "dev")


def test_convert_to_fp8_refuses_values_beyond_its_range(hub, tmp_path):
    from safetensors.torch import save_file

    state = load_file(fm.flux_file("dev", "bfl"))
    state["img_in.weight"][0, 0] = 1000.0
    path = tmp_path / "loud.safetensors"
    save_file(state, path)
    hub("import", str(path), "--name", "loud")
    result = hub("convert", "loud", "--dtype", "fp8", ok=False)
    assert "img_in.weight holds 1000" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) <= 2


def test_sd3_loras_and_flux_folder_identified(ctx, tmp_path):
    import json

    from safetensors.torch import save_file

    kohya = {
        "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 16),
        "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(48, 4),
        "lora_unet_joint_blocks_0_x_block_attn_qkv.alpha": torch.tensor(4.0),
    }
    save_file(kohya, tmp_path / "sd3-kohya.safetensors")
    best = identify_path(ctx, tmp_path / "sd3-kohya.safetensors").best
    assert (str(best.kind), str(best.base), best.layout) == ("lora", "sd3", "kohya"), best.reason
    peft = {  # a SD3.5 Large-width PEFT LoRA: to_q takes 2432 values in
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 2432),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(2432, 4),
    }
    save_file(peft, tmp_path / "sd35-peft.safetensors")
    best = identify_path(ctx, tmp_path / "sd35-peft.safetensors").best
    assert (str(best.base), best.layout) == ("sd3", "peft") and "2432" in best.reason
    folder = tmp_path / "FLUX.1-schnell"
    fm.flux_transformer("schnell").save_config(folder / "transformer")  # config.json only
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    best = identify_path(ctx, folder).best
    assert (str(best.base), best.variant, best.layout) == ("flux", "schnell", "diffusers")
