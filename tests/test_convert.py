"""Conversions: checked against diffusers' own loaders, round trips, dtypes, pickles, and
interruption."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import minimodels as tm
import pytest
import reference
import torch
from safetensors.torch import load_file, save_file

from hub import minimodels as mm


def _folder_state(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        sub.name: {k: v for f in sorted(sub.glob("*.safetensors")) for k, v in load_file(f).items()}
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and list(sub.glob("*.safetensors"))
    }


@pytest.mark.parametrize("name", ["sd1", "sdxl"])
def test_ldm_to_diffusers_equals_diffusers_from_single_file(hub, models, name):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )

    ckpt = models[f"mini-{name}"]
    hub("import", ckpt, "--name", "m")
    out = hub("convert", "m", "--to", "diffusers", "--json").json()
    folder = Path(out["path"])
    assert out["format"] == "diffusers" and out["base"] == name
    assert out["lineage" if "lineage" in out else "source"]["name"] == "convert"
    ours = _folder_state(folder)
    config = str(ckpt.parent / "config")
    for cls, key in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
        ref = cls.from_single_file(
            str(ckpt), config=config, subfolder=key, torch_dtype=torch.float16
        ).state_dict()
        assert ours[key].keys() == ref.keys(), key
        assert all(torch.equal(ours[key][k], ref[k]) for k in ref), key
    single = load_file(ckpt)
    prefix = mm.TEXT_PREFIXES[name][0]
    clip = {
        k.removeprefix("text_model."): v
        for k, v in convert_ldm_clip_checkpoint(single, remove_prefix=prefix).items()
    }
    te = {k.removeprefix("text_model."): v for k, v in ours["text_encoder"].items()}
    assert te.keys() == clip.keys() and all(torch.equal(te[k], clip[k]) for k in clip)
    if name == "sdxl":
        parts = mm.build_components("sdxl")
        g = convert_open_clip_checkpoint(
            parts["text_encoder_2"], single, prefix=mm.TEXT_PREFIXES["sdxl"][1]
        )
        assert ours["text_encoder_2"].keys() == g.keys()
        assert all(torch.equal(ours["text_encoder_2"][k], g[k]) for k in g)
    import json

    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == (
        "StableDiffusionXLPipeline" if name == "sdxl" else "StableDiffusionPipeline"
    )


def test_diffusers_to_ldm_to_diffusers_is_exact(hub, models):
    hub("import", models["mini-sdxl"], "--name", "m")
    first = Path(hub("convert", "m", "--to", "diffusers", "--name", "d1", "--json").json()["path"])
    ldm = hub("convert", "d1", "--to", "safetensors", "--name", "l1", "--json").json()
    assert ldm["layout"] == "ldm" and ldm["base"] == "sdxl"
    assert load_file(ldm["path"]).keys() == load_file(models["mini-sdxl"]).keys()
    second = Path(
        hub("convert", "l1", "--to", "diffusers", "--name", "d2", "--json").json()["path"]
    )
    a, b = _folder_state(first), _folder_state(second)
    assert a.keys() == b.keys()
    for comp in a:
        assert a[comp].keys() == b[comp].keys()
        assert all(torch.equal(a[comp][k], b[comp][k]) for k in a[comp]), comp


def test_fp16_conversion_equals_half_and_prune(hub, tmp_path, models):
    src = load_file(models["kohya-sd1"])  # float32 tensors
    state = {**src, "model_ema.decay": torch.tensor(0.999)}
    path = tmp_path / "f32.safetensors"
    save_file(state, path)
    hub("import", path, "--kind", "checkpoint", "--name", "f32")
    out = hub("convert", "f32", "--dtype", "fp16", "--prune", "--json").json()
    got = load_file(out["path"])
    assert "model_ema.decay" not in got
    for k, v in src.items():
        want = v.half() if v.is_floating_point() else v  # integers (alphas) stay as they are
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k
    assert out["name"] == "f32-fp16-pruned"
    lineage = hub("show", "f32-fp16-pruned", "--json").json()["lineage"]
    assert lineage[0]["name"] == "f32" and lineage[0]["params"]["dtype"] == "fp16"


def test_pickle_import_converts_and_keeps_both_hashes(hub, tmp_path, models):
    ckpt = tmp_path / "model.ckpt"
    state = load_file(models["mini-sd1"])
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 3}, ckpt)
    pickle_sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    [art] = hub("import", ckpt, "--keep-pickle", "--json").json()
    assert art["format"] == "safetensors" and art["kind"] == "checkpoint" and art["base"] == "sd1"
    assert art["converted_from"]["sha256"] == pickle_sha
    got = load_file(art["path"])
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    rows = hub("list", "--json").json()
    assert sorted(r["format"] for r in rows) == ["pickle", "safetensors"]
    lineage = hub("show", art["hashes"]["sha256"][:12], "--json").json()["lineage"]
    assert lineage[0]["parent_sha256"] == pickle_sha and lineage[0]["relation"] == "convert"


def test_a1111_embedding_pt_import_and_layout_round_trip(hub, tmp_path):
    vec = torch.randn(3, 768)
    path = tmp_path / "charturner.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vec.clone())}),
            "name": "charturner",
            "step": 100,
        },
        path,
    )
    [art] = hub("import", path, "--json").json()
    assert (art["kind"], art["layout"], art["base"]) == ("embedding", "a1111", "sd1")
    assert torch.equal(load_file(art["path"])["emb_params"], vec)
    d = hub("convert", "charturner", "--to", "diffusers-embedding", "--json").json()
    assert list(load_file(d["path"])) == ["<charturner>"]
    back = hub("convert", d["name"], "--to", "a1111", "--name", "again", "--json").json()
    assert torch.equal(load_file(back["path"])["emb_params"], vec)


def test_killed_conversion_leaves_nothing(hub, tmp_path):
    big = tmp_path / "big.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file(
        {f"model.diffusion_model.w{i}": torch.randn(2048, 2048, generator=g) for i in range(24)},
        big,
    )  # ~400 MB of float32
    hub("import", big, "--kind", "checkpoint", "--name", "big")
    before = hub("list", "--json").json()
    files_before = sorted(
        p for p in (hub.home / "models").rglob("*") if p.is_file() and ".incoming" not in p.parts
    )
    hub.kill_when_partial(hub.popen("convert", "big", "--dtype", "fp16", "--quiet"))
    files_after = sorted(
        p for p in (hub.home / "models").rglob("*") if p.is_file() and ".incoming" not in p.parts
    )
    assert files_after == files_before
    assert hub("list", "--json").json() == before


def test_hub_plugins_lists_converters_without_torch(hub):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv=['hub','plugins',"
            "'--json']\nfrom hub.cli import main\ntry: main()\nexcept SystemExit:"
            " pass\nprint('TORCH' if 'torch' in sys.modules else 'LIGHT')",
        ],
        env=hub.env,
        cwd=hub.cwd,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip().endswith("LIGHT")
    assert "converters:ldm-to-diffusers" in proc.stdout


@pytest.mark.parametrize("name", ["sd1", "sdxl"])
def test_kohya_to_peft_to_kohya_is_exact(hub, models, name):
    src = models[f"kohya-{name}"]
    hub("import", src, "--name", "k")
    peft = hub("convert", "k", "--to", "peft", "--json").json()
    assert (peft["kind"], peft["layout"], peft["base"]) == ("lora", "peft", name)
    peft_keys = load_file(peft["path"]).keys()
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in peft_keys)
    # PEFT names are the diffusers module names that peft itself wrote for this LoRA
    original = load_file(models[f"peft-{name}"]).keys()
    assert {k.replace("text_model.", "") for k in peft_keys} == {
        k.replace("text_model.", "") for k in original
    }
    back = hub("convert", peft["name"], "--to", "kohya", "--name", "k2", "--json").json()
    a, b = load_file(src), load_file(back["path"])
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_metadata_scale_survives_kohya_and_back(hub, rslora):
    """PEFT -> kohya gives every module the ``.alpha`` that keeps diffusers' weight change
    (lora_alpha=8, r=4, rank/alpha patterns, rsLoRA); kohya -> PEFT writes metadata that
    diffusers' own loader reads back to the same weights."""
    ckpt = tm.mini_checkpoint("sd1", dtype=torch.float32)
    peft = tm.peft_lora("sd1", metadata=True, variant="rslora" if rslora else "lora")
    hub("import", ckpt, "--name", "base")
    hub("import", peft, "--name", "p")
    kohya = load_file(hub("convert", "p", "--to", "kohya", "--name", "k", "--json").json()["path"])
    downs = [k for k in kohya if k.endswith(".lora_down.weight")]
    assert len(downs) == len(load_file(peft)) // 2
    assert all(k.replace("lora_down.weight", "alpha") in kohya for k in downs)
    expected = reference.fused_ldm_state("sd1", peft, scale=0.8)
    out = hub("merge", "base", "--lora", "k:0.8", "--name", "baked", "--json").json()
    baked = load_file(out["path"])
    back = hub("convert", "k", "--to", "peft", "--name", "p2", "--json").json()
    again = reference.fused_ldm_state("sd1", back["path"], scale=0.8)
    for key, ref in expected.items():
        tol = 1e-5 * ref.abs().max()
        assert (baked[key] - ref).abs().max() <= tol, key
        assert (again[key] - ref).abs().max() <= tol, key


def test_peft_layout_refuses_lycoris(hub, models):
    hub("import", models["loha-sd1"], "--name", "h")
    result = hub("convert", "h", "--to", "peft", ok=False)
    assert result.code != 0 and "not a plain LoRA" in result.err
    assert len(hub("list", "--json").json()) == 1
