"""``hub generate`` with SD3/SD3.5: from parts (an SAI-layout transformer, CLIP-L, CLIP-G, T5,
VAE, T5 tokenizer) and from SAI's whole checkpoint, equal to diffusers'
``StableDiffusion3Pipeline`` built directly from the same weights; a missing CLIP-G is
named; a PEFT LoRA patches the live model and is restored bit for bit."""

from __future__ import annotations

from pathlib import Path

import flux_models as fm
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

SMALL = dict(steps=2, width=64, height=64, seed=4)
PROMPT = "a blue house"
NEGATIVE = "a dog"
PARTS = {
    "sd35": lambda: fm.sd3_gen_file("sai"),
    "sd35-diffusers": lambda: fm.sd3_gen_file("diffusers"),
    "sd35-whole": lambda: fm.sd3_gen_file("whole"),
    "clip-l": lambda: fm.sd3_part_file("clip-l"),
    "clip-g": lambda: fm.sd3_part_file("clip-g"),
    "t5": lambda: fm.sd3_part_file("t5"),
    "ae": lambda: fm.part_file("vae16-ldm"),
    "t5-tokenizer": fm.t5_tokenizer_folder,
}
SD3_PARTS = dict(text_encoders=["clip-g", "clip-l", "t5"], vae="ae")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    from hub import plugins
    from hub.context import Context
    from hub.generate import Hub
    from hub.importing import import_path
    from hub.register import Overrides

    root = tmp_path_factory.mktemp("sd3-generate")
    plugins.reset_plugins()
    ctx = Context.load(home=str(root / "home"))
    for name, make in PARTS.items():
        import_path(ctx, make(), Overrides(name=name))
    return Hub(ctx=ctx, device="cpu", dtype="float32")


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def _reference(transformer=None) -> np.ndarray:
    image = fm.sd3_pipeline(transformer)(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=SMALL["steps"],
        guidance_scale=7.0,
        width=SMALL["width"],
        height=SMALL["height"],
        generator=torch.Generator("cpu").manual_seed(SMALL["seed"]),
    ).images[0]
    return _pixels(image)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return _reference()


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1, np.abs(got - want).max()


@pytest.mark.parametrize(
    ("model", "parts"),
    [("sd35", SD3_PARTS), ("sd35-diffusers", SD3_PARTS), ("sd35-whole", {})],
)
def test_generation_equals_diffusers_sd3_pipeline(hub, tmp_path, reference, model, parts):
    tokenizer = {"tokenizer": "t5-tokenizer"}
    result = hub.generate(
        prompt=PROMPT, negative=NEGATIVE, model=model, output=tmp_path / "a.png",
        **parts, **tokenizer, **SMALL,
    )  # fmt: skip
    _close(_pixels(result.image), reference)
    assert "CFG scale: 7" in result.infotext and "Distilled CFG Scale" not in result.infotext
    assert hub.loaded.pipe.text_encoder.config.hidden_size == 32  # CLIP-L: the narrower
    plan = hub.plan(_job(model=model, **parts))
    assert (plan.request.steps, plan.request.cfg, plan.request.sampler) == (28, 7.0, "Euler")


def _job(**settings):
    from hub.generate import Job

    return Job(prompt=PROMPT, **settings)


def test_missing_clip_g_is_named(hub):
    from hub.core.errors import HubError

    with pytest.raises(HubError, match="sd35 needs a CLIP-G text encoder"):
        hub.plan(_job(model="sd35", text_encoders=["clip-l", "t5"], vae="ae"))


def test_peft_lora_patches_and_restores(hub, tmp_path):
    """A diffusers PEFT LoRA on split q/k/v lands on the SAI file's fused qkv as row
    slices: the live model equals diffusers' fused one; the next call restores it."""
    from diffusers import StableDiffusion3Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from hub.importing import import_path
    from hub.register import Overrides

    model = fm.sd3_gen_transformer()
    torch.manual_seed(5)
    targets = ["to_q", "to_k", "to_v", "add_q_proj", "to_out.0", "norm1.linear"]
    model.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
    )
    out = tmp_path / "lora"
    StableDiffusion3Pipeline.save_lora_weights(
        str(out), transformer_lora_layers=get_peft_model_state_dict(model)
    )
    lora = out / "pytorch_lora_weights.safetensors"
    import_path(hub.ctx, lora, Overrides(name="sd3-style"))
    hub.generate(
        prompt=PROMPT, model="sd35", loras=["sd3-style:0.6"], tokenizer="t5-tokenizer",
        output=tmp_path / "l.png", **SD3_PARTS, **SMALL,
    )  # fmt: skip
    fused = fm.sd3_gen_transformer()
    pipe = StableDiffusion3Pipeline(None, None, None, None, None, None, None, None, None)
    pipe.transformer = fused
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora(lora_scale=0.6)
    pipe.unload_lora_weights()
    live, want = hub.loaded.transformer.state_dict(), fused.state_dict()
    changed = 0
    for key, value in want.items():
        scale = max(1e-12, value.abs().max().item())
        assert (live[key] - value).abs().max() <= 1e-5 * scale, key
        changed += not torch.equal(value, fm.sd3_gen_transformer().state_dict()[key])
    assert changed >= 6
    hub.generate(
        prompt=PROMPT, model="sd35", tokenizer="t5-tokenizer", output=tmp_path / "r.png",
        **SD3_PARTS, **SMALL,
    )  # fmt: skip
    file = load_file(Path(PARTS["sd35"]()))
    assert all(torch.equal(v, file[k]) for k, v in hub.loaded.weights.items())
