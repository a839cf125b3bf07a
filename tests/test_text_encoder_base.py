"""The base of an add-on told by its text-encoder tensors: IA3 and LoRA files with only
text-encoder modules (kohya ``lora_te_``/``lora_te1_``/``lora_te2_`` names, LyCORIS IA3
``.weight``/``.on_input`` pairs, diffusers/PEFT ``text_encoder.`` names).

The text encoders are the mini models' (real CLIP-L/OpenCLIP-H/bigG widths, one layer);
LoRA tensors are made by peft on them, the diffusers files saved by ``save_lora_weights``.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hub import minimodels
from hub.register import identify_path

CONFIGS = {"clip-l": minimodels.CLIP_L, "clip-h": minimodels.CLIP_H, "clip-g": minimodels.CLIP_G}
# base -> the encoders of its text side, (kohya prefix, diffusers prefix, config)
ENCODERS = {
    "sd1": [("lora_te_", "text_encoder.", "clip-l")],
    "sd2": [("lora_te_", "text_encoder.", "clip-h")],
    "sdxl": [("lora_te1_", "text_encoder.", "clip-l"), ("lora_te2_", "text_encoder_2.", "clip-g")],
}
TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
RANK = 4


def _text_model(config: str, seed: int = 0) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if config == "clip-g" else CLIPTextModel
    return cls(CLIPTextConfig(**CONFIGS[config])).eval()


def _old_name(module: str) -> str:
    """transformers 5 dropped CLIPTextModel's ``text_model.`` prefix; kohya names keep it."""
    return module if module.startswith("text_model.") else "text_model." + module


def _peft_state(config: str) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model_state_dict

    model = _text_model(config)
    model.add_adapter(
        LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS, init_lora_weights=False)
    )
    return get_peft_model_state_dict(model)


def kohya_lora(base: str, path) -> None:
    """kohya's naming: ``<prefix><module path with _>.lora_down/lora_up/alpha``."""
    state = {}
    for prefix, _, config in ENCODERS[base]:
        for key, value in _peft_state(config).items():
            module, _, param = key.rpartition(".lora_")
            name = prefix + _old_name(module).replace(".", "_")
            state[f"{name}.lora_{'down' if param.startswith('A') else 'up'}.weight"] = value
            state[f"{name}.alpha"] = torch.tensor(float(RANK))
    save_file({k: v.contiguous() for k, v in state.items()}, path)


def peft_lora(base: str, path) -> None:
    """A text-encoder-only LoRA saved by diffusers (``text_encoder.…lora_A.weight``)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    layers = {
        f"{prefix[:-1]}_lora_layers": _peft_state(config) for _, prefix, config in ENCODERS[base]
    }
    pipeline = StableDiffusionXLPipeline if base == "sdxl" else StableDiffusionPipeline
    pipeline.save_lora_weights(str(path.parent / "out"), **layers, safe_serialization=True)
    (path.parent / "out" / "pytorch_lora_weights.safetensors").rename(path)


def ia3(base: str, path) -> None:
    """LyCORIS IA3 as A1111's network_ia3 reads it: a 1-D ``weight`` scaling the outputs of
    k_proj/v_proj (``on_input`` 0) and the inputs of mlp.fc2 (``on_input`` 1, 4x wider)."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for prefix, _, config in ENCODERS[base]:
        shapes = {k: v.shape for k, v in _text_model(config).state_dict().items()}
        for key, (out_f, in_f) in ((k, s) for k, s in shapes.items() if len(s) == 2):
            module = key.removesuffix(".weight")
            on_input = module.endswith("mlp.fc2")
            if not module.endswith(("self_attn.k_proj", "self_attn.v_proj", "mlp.fc2")):
                continue
            name = prefix + _old_name(module).replace(".", "_")
            state[f"{name}.weight"] = torch.randn(in_f if on_input else out_f, generator=g)
            state[f"{name}.on_input"] = torch.tensor(int(on_input))
    save_file(state, path)


BUILDERS = {"ia3": ia3, "kohya": kohya_lora, "peft": peft_lora}
ALGO = {"ia3": "ia3", "kohya": "lora", "peft": "lora"}
CASES = [(style, base) for style in BUILDERS for base in ENCODERS]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    made = {}
    for style, base in CASES:
        folder = tmp_path_factory.mktemp(f"{style}-{base}")
        made[style, base] = folder / f"{style}-te-{base}.safetensors"
        BUILDERS[style](base, made[style, base])
    return made


def _shape(path, key: str) -> list[int]:
    with safe_open(str(path), "pt") as fh:
        return fh.get_slice(key).get_shape()


def _assert_named_evidence(path, reason: str) -> list[tuple[int, str]]:
    """Every width the reason cites comes from a tensor of the file that shows it."""
    cited = [(int(w), k) for w, k in re.findall(r"width (\d+) from (\S+)", reason)]
    assert cited, reason
    for width, key in cited:
        shape = _shape(path, key)
        assert width in shape, (key, shape)
    return cited


@pytest.mark.parametrize(("style", "base"), CASES)
def test_text_encoder_tensors_tell_the_base(ctx, files, style, base):
    path = files[style, base]
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    assert not {"ss_base_model_version", "ss_v2", "modelspec.architecture"} & set(meta)
    best = identify_path(ctx, path).best
    assert (str(best.kind), best.algo, str(best.base)) == ("lora", ALGO[style], base), best.reason
    cited = _assert_named_evidence(path, best.reason)
    assert all(k.startswith(("lora_te", "text_encoder")) for _, k in cited)
    expected = {"sd1": {768}, "sd2": {1024}, "sdxl": {768, 1280}}[base]
    assert {w for w, _ in cited} == expected


def test_ia3_with_unet_modules_takes_the_base_from_its_text_encoder(ctx, files, models, tmp_path):
    """IA3 UNet scales carry no context width; without metadata the text encoder tells."""
    unet = load_file(models["ia3-sd1"])
    assert unet and all(k.startswith("lora_unet_") for k in unet)
    path = tmp_path / "ia3-unet-te.safetensors"
    save_file(unet | load_file(files["ia3", "sd1"]), path)  # no ss_base_model_version
    best = identify_path(ctx, path).best
    assert (best.algo, str(best.base)) == ("ia3", "sd1"), best.reason
    cited = _assert_named_evidence(path, best.reason)
    assert {w for w, _ in cited} == {768} and all(k.startswith("lora_te_") for _, k in cited)


def test_show_why_names_the_text_encoder_tensor(hub, files):
    path = files["ia3", "sdxl"]
    hub("import", path, "--name", "te-ia3")
    out = hub("show", "lora:te-ia3", "--why", "--json").json()
    assert (out["base"], out["algo"]) == ("sdxl", "ia3")
    lora = next(v for v in out["why"] if v["probe"] == "lora")
    cited = _assert_named_evidence(path, lora["reason"])
    assert any(k.startswith("lora_te2_") and w == 1280 for w, k in cited)
    assert any(k.startswith("lora_te1_") and w == 768 for w, k in cited)


def test_unet_and_text_widths_that_disagree_give_no_base(ctx, files, models, tmp_path):
    """UNet context 768 (SD1) with a 1024-wide (SD2) text encoder: evidence disagrees."""
    state = {k: v for k, v in load_file(models["kohya-sd1"]).items() if k.startswith("lora_unet_")}
    state |= load_file(files["kohya", "sd2"])
    path = tmp_path / "mixed.safetensors"
    save_file(state, path)
    best = identify_path(ctx, path).best
    assert (str(best.kind), str(best.base)) == ("lora", "unknown")
    assert "disagree" in best.reason
    assert {w for w, _ in _assert_named_evidence(path, best.reason)} == {768, 1024}
