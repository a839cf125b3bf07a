"""``hub generate`` with Flux.1: from parts as ComfyUI users keep them (transformer, CLIP-L,
T5, VAE, T5 tokenizer), from one whole checkpoint and from a diffusers folder, each equal to
diffusers' ``FluxPipeline`` built directly from the same weights; LoRAs (kohya, PEFT, XLabs)
patched equal to diffusers' ``load_lora_weights`` + ``fuse_lora`` and restored bit for bit;
missing parts refused in one line; dev/schnell defaults; ``--from`` re-runs an image."""

from __future__ import annotations

import json
from pathlib import Path

import flux_models as fm
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

SMALL = dict(steps=2, width=64, height=64, seed=5)
PROMPT = "a red castle in the sky"
PARTS = {
    "clip-l": lambda: fm.part_file("clip-l"),
    "t5": lambda: fm.part_file("t5"),
    "t5-fp8": lambda: fm.part_file("t5-fp8-scaled"),
    "ae": lambda: fm.part_file("vae16-ldm"),
    "t5-tokenizer": fm.t5_tokenizer_folder,
    "flux-dev": lambda: fm.flux_file("dev", "bfl"),
    "flux-schnell": lambda: fm.flux_file("schnell", "bfl"),
    "flux-dev-diffusers": lambda: fm.flux_file("dev", "diffusers"),
    "flux-comfy": lambda: fm.flux_file("dev", "comfy"),
    "flux-fp8": lambda: fm.flux_file("dev", "bfl", "F8_E4M3"),
    "flux-folder": lambda: fm.flux_folder("dev"),
    "kohya": fm.flux_kohya_lora,
    "peft": fm.flux_peft_lora,
    "xlabs": fm.flux_xlabs_lora,
}
DEV_PARTS = dict(text_encoders=["clip-l", "t5"], vae="ae")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding tiny Flux transformers, their parts and LoRAs."""
    from hub import plugins
    from hub.context import Context
    from hub.importing import import_path
    from hub.register import Overrides

    root = tmp_path_factory.mktemp("flux-generate")
    plugins.reset_plugins()
    ctx = Context.load(home=str(root / "home"))
    for name, make in PARTS.items():
        import_path(ctx, make(), Overrides(name=name))
    ctx.db.dispose()
    return root / "home"


@pytest.fixture(scope="module")
def hub(home: Path):
    from hub.generate import Hub

    return Hub(home=home, device="cpu", dtype="float32")


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def _reference(variant: str = "dev", transformer=None, **settings) -> np.ndarray:
    """diffusers' own FluxPipeline on the same weights, seed and settings."""
    s = SMALL | settings
    pipe = fm.flux_pipeline(variant, transformer)
    image = pipe(
        prompt=PROMPT,
        num_inference_steps=s["steps"],
        guidance_scale=s.get("guidance", 3.5),
        width=s["width"],
        height=s["height"],
        generator=torch.Generator("cpu").manual_seed(s["seed"]),
        max_sequence_length=512,
    ).images[0]
    return _pixels(image)


@pytest.fixture(scope="module")
def dev_reference() -> np.ndarray:
    return _reference("dev")


def _close_pixels(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1, np.abs(got - want).max()


@pytest.mark.parametrize(
    ("model", "parts"),
    [
        ("flux-dev", DEV_PARTS),
        ("flux-dev-diffusers", DEV_PARTS),
        ("flux-comfy", {}),
        ("flux-folder", {}),
    ],
)
def test_generation_equals_diffusers_flux_pipeline(hub, tmp_path, dev_reference, model, parts):
    result = hub.generate(prompt=PROMPT, model=model, output=tmp_path / "a.png", **parts, **SMALL)
    _close_pixels(_pixels(result.image), dev_reference)
    assert "Distilled CFG Scale: 3.5" in result.infotext
    assert "Steps: 2" in result.infotext and "Sampler: Euler" in result.infotext


def test_fp8_scaled_t5_part_upcasts(hub, tmp_path):
    """ComfyUI's scaled fp8 T5 is its weights rounded to fp8: the image is close to the fp32
    one and the T5 weights the backend holds are fp8 x scale, computed in fp32."""
    result = hub.generate(
        prompt=PROMPT,
        model="flux-dev",
        text_encoders=["clip-l", "t5-fp8"],
        vae="ae",
        output=tmp_path / "b.png",
        **SMALL,
    )
    t5 = hub.loaded.pipe.text_encoder_2
    raw = load_file(fm.part_file("t5-fp8-scaled"))
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    want = raw[key].float() * raw[key.removesuffix("weight") + "scale_weight"].float()
    assert torch.equal(t5.state_dict()[key], want)
    assert _pixels(result.image).shape == (64, 64, 3)


def test_fp8_transformer_computes_upcast(hub, tmp_path):
    """An fp8 (E4M3) transformer file runs in float32: its live weights are the fp8 values
    upcast, and the image equals diffusers' pipeline on the same fp8-rounded weights."""
    result = hub.generate(
        prompt=PROMPT, model="flux-fp8", output=tmp_path / "8.png", **DEV_PARTS, **SMALL
    )
    file = load_file(fm.flux_file("dev", "bfl", "F8_E4M3"))
    for key, value in hub.loaded.weights.items():
        assert value.dtype == torch.float32 and torch.equal(value, file[key].float()), key
    rounded = fm.flux_transformer("dev")
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(torch.float8_e4m3fn).float())
    _close_pixels(_pixels(result.image), _reference("dev", rounded))


def test_schnell_defaults(hub, tmp_path):
    plan = hub.plan(_job(model="flux-schnell", **DEV_PARTS))
    assert (plan.request.steps, plan.request.guidance) == (4, None)
    plan = hub.plan(_job(model="flux-dev", **DEV_PARTS))
    assert (plan.request.steps, plan.request.guidance) == (28, 3.5)
    result = hub.generate(
        prompt=PROMPT, model="flux-schnell", output=tmp_path / "s.png", **DEV_PARTS, **SMALL
    )
    assert "Distilled CFG Scale" not in result.infotext
    assert "Module 1: ae, Module 2: clip-l, Module 3: t5" in result.infotext
    _close_pixels(_pixels(result.image), _reference("schnell"))


def _job(**settings):
    from hub.generate import Job

    return Job(prompt=PROMPT, **settings)


def _fused_transformer(lora: Path, scale: float):
    """diffusers: the tiny dev transformer with the LoRA loaded and fused at ``scale``."""
    from diffusers import FluxPipeline

    model = fm.flux_transformer("dev")
    pipe = FluxPipeline(None, None, None, None, None, None, model)
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    return model


def _rel_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.float() - b.float()).abs().max() <= 1e-5 * max(1e-12, b.float().abs().max()))


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        *[(k, m) for k in ("kohya", "peft", "xlabs") for m in ("flux-dev", "flux-dev-diffusers")],
        ("peft", "flux-comfy"),
    ],
)
def test_lora_patch_equals_diffusers_fuse_and_restores(hub, tmp_path, kind, model):
    from hub.core import flux_keys

    result = hub.generate(
        prompt=PROMPT,
        model=model,
        loras=[f"{kind}:0.7"],
        output=tmp_path / "l.png",
        **DEV_PARTS,
        **SMALL,
    )
    loaded = hub.loaded
    fused = _fused_transformer(PARTS[kind](), 0.7)
    live = loaded.transformer.state_dict()
    want = fused.state_dict()
    assert set(live) == set(want)
    for key in want:
        assert _rel_close(live[key], want[key]), key
    # the patched weights, under the file's own keys, are the diffusers ones in that layout
    stored = dict(loaded.weights)
    if model != "flux-dev-diffusers":
        stored = flux_keys.diffusers_from_bfl(stored)
    for key in want:
        assert _rel_close(stored[key], want[key]), key
    _close_pixels(_pixels(result.image), _reference("dev", fused))
    assert f'Lora hashes: "{kind}:' in result.infotext
    # the next generation without the LoRA restores every weight bit for bit
    hub.generate(prompt=PROMPT, model=model, output=tmp_path / "r.png", **DEV_PARTS, **SMALL)
    file = load_file(PARTS[model]())
    for key, value in hub.loaded.weights.items():
        assert torch.equal(value, file[key]), key
    assert not hub.loaded.patches.keys


def test_kohya_linear1_by_formula(hub, tmp_path, home):
    """diffusers reads a kohya ``linear1`` LoRA at full width only: check by the formula
    ``W + s * alpha/rank * up @ down`` on the live fused tensor and its diffusers views."""
    from hub.importing import import_path
    from hub.register import Overrides

    path = fm.flux_kohya_lora(linear1=True)
    import_path(hub.ctx, path, Overrides(name="l1"))
    hub.generate(
        prompt=PROMPT, model="flux-dev", loras=["l1:0.5"], output=tmp_path / "k.png",
        **DEV_PARTS, **SMALL,
    )  # fmt: skip
    lora, file = load_file(path), load_file(fm.flux_file("dev", "bfl"))
    name = "lora_unet_single_blocks_1_linear1"
    up, down = lora[f"{name}.lora_up.weight"], lora[f"{name}.lora_down.weight"]
    want = file["single_blocks.1.linear1.weight"] + 0.5 * 8 / 4 * up @ down
    live = hub.loaded.weights["single_blocks.1.linear1.weight"]
    assert _rel_close(live, want)
    block = hub.loaded.transformer.single_transformer_blocks[1]
    hidden = block.attn.to_q.weight.shape[0]
    assert torch.equal(block.attn.to_k.weight, live[hidden : 2 * hidden])
    assert torch.equal(block.proj_mlp.weight, live[3 * hidden :])


def _hub_cli(runner, *names: str) -> None:
    for name in names:
        runner("import", str(PARTS[name]()), "--name", name)


def _refused(runner, args: tuple[str, ...], message: str) -> None:
    result = runner("generate", PROMPT, "--model", "flux-dev", *args, "--dry-run", ok=False)
    assert result.code != 0 and message in result.err, result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2


def test_missing_parts_are_one_line_errors(tmp_path):
    from conftest import HubRunner

    runner = HubRunner(tmp_path / "home", tmp_path)
    _hub_cli(runner, "flux-dev", "clip-l", "ae")
    _refused(runner, ("--text-encoder", "clip-l", "--vae", "ae"), "needs a T5-XXL text encoder")
    _hub_cli(runner, "t5")
    _refused(runner, ("--text-encoder", "t5", "--vae", "ae"), "needs a CLIP-L text encoder")
    _refused(runner, ("--text-encoder", "clip-l", "--text-encoder", "t5"), "needs a 16-channel VAE")
    _refused(
        runner,
        ("--text-encoder", "clip-l", "--text-encoder", "t5", "--vae", "ae"),
        "flux-dev needs a T5 tokenizer and none is registered",
    )
    _refused(runner, ("--text-encoder", "ae"), "ae is a vae, not a text_encoder")
    _refused(runner, ("--text-encoder", "flux-dev"), "flux-dev is a checkpoint")


def test_missing_t5_is_named(tmp_path):
    from conftest import HubRunner

    runner = HubRunner(tmp_path / "home", tmp_path)
    _hub_cli(runner, "flux-dev", "clip-l", "ae", "t5-tokenizer")
    result = runner(
        "generate", PROMPT, "--model", "flux-dev", "--text-encoder", "clip-l", "--vae", "ae",
        ok=False,
    )  # fmt: skip
    assert result.code != 0 and "flux-dev needs a T5-XXL text encoder" in result.err
    assert "--text-encoder REF" in result.err and "Traceback" not in result.err


def test_cli_generate_from_parts_and_from_image(tmp_path, dev_reference):
    """The command line end to end: a tokenizer folder found by ``hub scan``, a stack in
    hub.toml naming the parts, and ``--from`` re-running the image to the same pixels."""
    from conftest import HubRunner
    from PIL import Image

    runner = HubRunner(tmp_path / "home", tmp_path)
    _hub_cli(runner, "flux-dev", "clip-l", "t5", "ae")
    comfy = tmp_path / "ComfyUI" / "comfy"
    tokenizer = comfy / "t5_tokenizer"
    tokenizer.mkdir(parents=True)
    for file in fm.t5_tokenizer_folder().iterdir():
        (tokenizer / file.name).write_bytes(file.read_bytes())
    runner("scan", str(tmp_path / "ComfyUI"))
    [tok] = runner("list", "--kind", "tokenizer", "--json").json()
    assert (tok["variant"], tok["path"]) == ("t5", str(tokenizer))
    (runner.home).mkdir(exist_ok=True)
    (tmp_path / "hub.toml").write_text(
        '[stacks.flux]\nmodel = "flux-dev"\ntext_encoders = ["clip-l", "t5"]\nvae = "ae"\n'
    )
    first = tmp_path / "first.png"
    runner(
        "generate", PROMPT, "--stack", "flux", "--steps", "2", "-W", "64", "-H", "64",
        "--seed", "5", "-o", str(first),
    )  # fmt: skip
    _close_pixels(_pixels(Image.open(first).convert("RGB")), dev_reference)
    text = Image.open(first).text["parameters"]
    assert "Distilled CFG Scale: 3.5" in text and "Module 1: ae" in text
    record = json.loads(Image.open(first).text["sd-hub"])
    assert [t["name"] for t in record["text_encoders"]] == ["clip-l", "t5"]
    again = tmp_path / "again.png"
    (tmp_path / "hub.toml").unlink()
    runner("generate", "--from", str(first), "--offline", "-o", str(again))
    assert np.array_equal(_pixels(Image.open(again)), _pixels(Image.open(first)))
    other = tmp_path / "g.png"
    runner("generate", "--from", str(first), "--offline", "--set", "guidance=5", "-o", str(other))
    assert "Distilled CFG Scale: 5" in Image.open(other).text["parameters"]
    _close_pixels(_pixels(Image.open(other).convert("RGB")), _reference("dev", guidance=5.0))
